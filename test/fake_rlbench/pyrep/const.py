"""The piece of pyrep/const.py that ObservationConfig uses."""

from enum import Enum


class RenderMode(Enum):
    OPENGL = 0
    OPENGL3 = 7
    OPENGL3_WINDOWED = 16


class Verbosity(Enum):
    NONE = "none"
    ERRORS = "errors"
    WARNINGS = "warnings"
    LOAD_INFOS = "loadinfos"
    SCRIPT_ERRORS = "scripterrors"
    SCRIPT_WARNINGS = "scriptwarnings"
    SCRIPT_INFOS = "scriptinfos"
    INFOS = "infos"
    DEBUG = "debug"
    TRACE_LUA = "tracelua"
    TRACE_ALL = "traceall"
