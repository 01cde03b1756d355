"""Declaring, documenting and validating node parameters in one place.

Each node lists its parameters as `Param`s; `declare_params` declares them with their
descriptions (so `ros2 param describe` explains them) and returns the values; a failed
check raises ParameterError naming the parameter, and `run_node` turns that into one
clear log line and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.experimental.events_executor import EventsExecutor
from rclpy.node import Node


class ParameterError(ValueError):
    """A parameter value a node refuses."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    check: Optional[Callable[[Any], bool]] = None
    requirement: str = ""  # what `check` demands, for the error message

    def validate(self, value: Any) -> Any:
        if isinstance(self.default, float) and isinstance(value, int):
            value = float(value)
        if isinstance(value, float) and math.isnan(value):
            raise ParameterError(f"parameter '{self.name}' is NaN")
        if self.check is not None and not self.check(value):
            raise ParameterError(f"parameter '{self.name}' = {value!r} is invalid: must be {self.requirement}")
        return value


def positive(p: str = "> 0"):
    return dict(check=lambda v: v > 0, requirement=p)


def non_negative():
    return dict(check=lambda v: v >= 0, requirement=">= 0")


def one_of(*choices: str):
    return dict(check=lambda v: v in choices, requirement=f"one of {list(choices)}")


def probability():
    return dict(check=lambda v: 0.0 <= v <= 1.0, requirement="in [0, 1]")


def declare_params(node: Node, params: list[Param]) -> dict[str, Any]:
    """Declare every parameter (with its description) and return validated values."""
    values = {}
    for p in params:
        descriptor = ParameterDescriptor(description=p.description)
        try:
            value = node.declare_parameter(p.name, p.default, descriptor).value
        except Exception as e:  # rclpy raises InvalidParameterTypeException etc.
            raise ParameterError(f"parameter '{p.name}': {e}") from None
        values[p.name] = p.validate(value)
    return values


def run_node(factory: Callable[[], Node], args: Optional[list[str]] = None, threads: int = 1) -> int:
    """Create the node with rclpy, spin it until Ctrl-C/SIGTERM or until it asks to stop
    (`node.finished` set), and return the process exit code."""
    rclpy.init(args=args if args is not None else sys.argv)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = None
    code = 0
    try:
        node = factory()
        if threads > 1:
            executor = MultiThreadedExecutor(num_threads=threads)
        elif os.environ.get("PORL_EXECUTOR", "events") == "events":
            executor = EventsExecutor()
        else:
            executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not getattr(node, "finished", False):
            executor.spin_once(timeout_sec=0.1)
        code = getattr(node, "exit_code", 0)
    except ParameterError as e:
        (node.get_logger() if node else rclpy.logging.get_logger("porl_ros")).fatal(str(e))
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
