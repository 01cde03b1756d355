"""Typed settings: each default, its description and its check written once, beside the field.

A settings class is a dataclass deriving from `Settings` whose fields are made by `setting()`:

    @dataclass
    class StatusSettings(Settings):
        status_rate_hz: float = setting(2.0, "TrainingStatus publishing rate.", POSITIVE)

Everything else is derived from these declarations:
  - validation: building an instance coerces each value to the field's type and runs its
    check; a failure raises SettingError naming the field (`check()` adds cross-field rules);
  - the nodes' ROS parameters, described for `ros2 param describe` (porl_ros/nodes/params.py);
  - the command-line options of `porl-ros experiment` (`add_options`, `from_options`);
  - the parameter tables of docs/parameters.md (`markdown_table`, scripts/gen_parameter_docs.py).

Types: bool, int, float (finite), str, tuple[X, ...] of those (a list in YAML and ROS), and
Optional[X]. Optional settings and ROS: a ROS parameter cannot hold None, so an Optional[X]
setting is declared as a dynamically typed parameter; left unset (no value), or set to the
string `none`, it reads as None; set to a value of type X, it is that value. The command
line follows the same convention (`--presample-utd-ratio none`).
"""

from __future__ import annotations

import argparse
import array
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

NONE_TEXT = "none"  # how None is written on the command line and in ROS parameters


@dataclass(frozen=True)
class Check:
    """A condition on a value (already of the field's type) and what it demands, in words."""

    test: Callable[[Any], bool]
    text: str


POSITIVE = Check(lambda v: v > 0, "> 0")
NON_NEGATIVE = Check(lambda v: v >= 0, ">= 0")
AT_LEAST_ONE = Check(lambda v: v >= 1, ">= 1")
PROBABILITY = Check(lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
POSITIVE_SIZES = Check(lambda v: len(v) > 0 and all(x > 0 for x in v), "non-empty, each > 0")


def one_of(*choices: Any) -> Check:
    return Check(lambda v: v in choices, f"one of {list(choices)}")


def within(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Check:
    """low <= v <= high, with either end open."""
    def test(v: Any) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    return Check(test, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


class SettingError(ValueError):
    """A value a settings class refuses; the message starts with the field's name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def setting(default: Any, doc: str, check: Optional[Check] = None) -> Any:
    """A settings field: its default (a list becomes a tuple), a one-line description, a check."""
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata={"doc": doc, "check": check})


_KIND_NAMES = {bool: "true or false", int: "an int", float: "a number", str: "a string"}
_PLURALS = {bool: "booleans", int: "ints", float: "numbers", str: "strings"}


@dataclass(frozen=True)
class FieldInfo:
    """What a settings field is, read from its annotation and `setting()` metadata."""

    name: str
    kind: type  # bool, int, float or str (of the elements, for a sequence)
    sequence: bool
    optional: bool
    default: Any
    doc: str
    check: Optional[Check]

    @property
    def requirement(self) -> str:
        """The values accepted, in words (for errors, ROS descriptions and docs)."""
        text = f"a list of {_PLURALS[self.kind]}" if self.sequence else _KIND_NAMES[self.kind]
        if self.check is not None:
            text += f", {self.check.text}"
        return f"{text}, or {NONE_TEXT}" if self.optional else text

    def coerce(self, value: Any) -> Any:
        """`value` as this field's type (ints accepted for floats, lists for tuples), checked."""
        if self.optional and (value is None or (isinstance(value, str) and value.lower() == NONE_TEXT)):
            return None
        try:
            if self.sequence:
                if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, array.array)):
                    raise TypeError
                value = tuple(self._scalar(item) for item in value)
            else:
                value = self._scalar(value)
        except TypeError:
            raise SettingError(self.name, f"{self.name} = {value!r} is invalid: must be {self.requirement}") from None
        if self.check is not None and not self.check.test(value):
            raise SettingError(self.name, f"{self.name} = {value!r} is invalid: must be {self.requirement}")
        return value

    def _scalar(self, value: Any) -> Any:
        if self.kind is bool:
            if not isinstance(value, bool):
                raise TypeError
        elif self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError
            value = float(value)
        elif not isinstance(value, str):
            raise TypeError
        return value

    def text(self, value: Any) -> str:
        """A value as written in YAML / on the command line."""
        if value is None:
            return NONE_TEXT
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return "[" + ", ".join(self.text(v) for v in value) + "]"
        return repr(value) if isinstance(value, str) and value == "" else str(value)


def _unpack(annotation: Any) -> tuple[type, bool, bool]:
    """(element kind, sequence?, optional?) of an annotation such as Optional[tuple[int, ...]]."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported settings type {annotation!r}")
        annotation, optional = rest[0], True
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], True, optional
    return annotation, False, optional


_FIELDS: dict[type, tuple[FieldInfo, ...]] = {}


def fields_of(cls: type) -> tuple[FieldInfo, ...]:
    """The fields of a settings class, in declaration order."""
    if cls not in _FIELDS:
        hints = typing.get_type_hints(cls)
        infos = []
        for f in dataclasses.fields(cls):
            if "doc" not in f.metadata:
                raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()")
            kind, sequence, optional = _unpack(hints[f.name])
            if kind not in _KIND_NAMES:
                raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {hints[f.name]!r}")
            infos.append(FieldInfo(f.name, kind, sequence, optional, f.default, f.metadata["doc"],
                                   f.metadata["check"]))
        _FIELDS[cls] = tuple(infos)
    return _FIELDS[cls]


def field_names(*classes: type) -> list[str]:
    return [info.name for cls in classes for info in fields_of(cls)]


@dataclass
class Settings:
    """Base of every settings class: validation on construction, dict round trips."""

    def __post_init__(self) -> None:
        for info in fields_of(type(self)):
            setattr(self, info.name, info.coerce(getattr(self, info.name)))
        self.check()

    def check(self) -> None:
        """Rules between fields (raise SettingError naming one); none by default."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists) for JSON / YAML / ROS parameters."""
        return {info.name: list(v) if isinstance(v := getattr(self, info.name), tuple) else v
                for info in fields_of(type(self))}

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from a mapping; a key that is no field raises SettingError naming it."""
        known = set(field_names(cls))
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingError(unknown[0], f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def pick(cls, values: dict[str, Any]):
        """Build from the keys of `values` that are fields of this class (others are ignored)."""
        known = set(field_names(cls))
        return cls(**{k: v for k, v in values.items() if k in known})


# ---------------------------------------------------------------------------- command line
def _parser_for(info: FieldInfo) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if info.optional and text.lower() == NONE_TEXT:
            return None
        if info.kind is bool:
            if text.lower() not in ("true", "false"):
                raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
            return text.lower() == "true"
        return info.kind(text)
    parse.__name__ = info.kind.__name__
    return parse


def add_options(parser: argparse.ArgumentParser, cls: type, defaults: Optional[dict[str, Any]] = None,
                title: Optional[str] = None, exclude: tuple[str, ...] = ()) -> None:
    """One `--field-name` option per field of `cls` (but `exclude`); `defaults` replace the class's own."""
    group = parser.add_argument_group(title or cls.__name__)
    defaults = defaults or {}
    for info in fields_of(cls):
        if info.name in exclude:
            continue
        default = defaults.get(info.name, info.default)
        group.add_argument("--" + info.name.replace("_", "-"), dest=info.name, type=_parser_for(info),
                           nargs="+" if info.sequence else None, default=default, metavar=info.kind.__name__.upper(),
                           help=f"{info.doc} ({info.requirement}; default {info.text(default)})")


def from_options(cls: type, options: argparse.Namespace):
    """The instance of `cls` the parsed options describe (raises SettingError)."""
    return cls.pick(vars(options))


# ---------------------------------------------------------------------------- docs
def markdown_table(cls: type) -> str:
    """A markdown table of the fields of `cls`: name, default, what it accepts, what it is."""
    lines = ["| parameter | default | accepts | description |", "| --- | --- | --- | --- |"]
    for info in fields_of(cls):
        cells = [f"`{info.name}`", f"`{info.text(info.default)}`", info.requirement, info.doc]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
