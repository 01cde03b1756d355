"""Stand-in for pyrep/pyrep.py's PyRep: environment checks and the one-thread rule.

Like the real class, the constructor raises PyRepError when COPPELIASIM_ROOT is unset or
not an existing path, and ``launch`` makes the calling thread the simulation thread. The
real CoppeliaSim misbehaves (or crashes) when called from another thread; this double
raises RuntimeError instead, so that tests notice. Without an X display (DISPLAY unset) the
real ``launch`` aborts the process; this double raises ``testing.ProcessAborted``.
"""

import os
import threading

from fake_rlbench import testing
from fake_rlbench.pyrep.const import Verbosity
from fake_rlbench.pyrep.errors import PyRepError


class PyRep(object):
    def __init__(self):
        self.running = False
        self._init_thread_id = None
        if "COPPELIASIM_ROOT" not in os.environ:
            raise PyRepError(
                "COPPELIASIM_ROOT not defined. See installation instructions.")
        self._vrep_root = os.environ["COPPELIASIM_ROOT"]
        if not os.path.exists(self._vrep_root):
            raise PyRepError(
                "COPPELIASIM_ROOT was not a correct path. See installation instructions")

    def _check_thread(self, what: str) -> None:
        testing.record("pyrep." + what)
        if self._init_thread_id is None:
            raise PyRepError("PyRep.%s called before launch()" % what)
        if threading.get_ident() != self._init_thread_id:
            raise RuntimeError(
                "PyRep.%s called from thread %d but CoppeliaSim was launched from "
                "thread %d" % (what, threading.get_ident(), self._init_thread_id))

    def launch(self, scene_file: str = "", headless: bool = False,
               responsive_ui: bool = False, blocking: bool = False,
               verbosity: Verbosity = Verbosity.NONE) -> None:
        if not os.environ.get("DISPLAY"):
            # CoppeliaSim 4.1 starts Qt on every launch, headless or not: with no X display
            # the real process aborts (SIGABRT, core dump) and nothing in Python runs after.
            # The double cannot abort the test process, so it raises a BaseException that no
            # `except Exception` handles: a test that sees it has launched without a display.
            raise testing.ProcessAborted(
                "qt.qpa.xcb: could not connect to display; This application failed to start "
                "because no Qt platform plugin could be initialized. (core dumped)")
        self._init_thread_id = threading.get_ident()
        self.headless = headless
        self._check_thread("launch")

    def start(self) -> None:
        self._check_thread("start")
        self.running = True

    def stop(self) -> None:
        self._check_thread("stop")
        self.running = False

    def step(self) -> None:
        self._check_thread("step")

    def shutdown(self) -> None:
        self._check_thread("shutdown")
        self.running = False
        self._init_thread_id = None
