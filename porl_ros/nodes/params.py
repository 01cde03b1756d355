"""Node parameters from the settings classes, and the loop that runs a node.

`declare_settings` declares one ROS parameter per field of a node's settings classes
(porl_ros/nodes/settings.py: NODE_SETTINGS), with the field's description and what it
accepts (so `ros2 param describe` explains it), and returns the validated instances. An
Optional field is declared dynamically typed: unset or `none` means None (see
porl_ros/core/settings.py). A bad value raises ParameterError naming the parameter, and
`run_node` turns that into one clear log line and exit code 2 instead of a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Optional

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.experimental.events_executor import EventsExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from porl_ros.core.settings import SettingError, fields_of
from porl_ros.nodes.settings import NODE_SETTINGS


class ParameterError(ValueError):
    """A parameter value a node refuses."""


def declare_settings(node: Node, kind: str) -> tuple:
    """Declare the parameters of a node of this kind (a graph node name, whatever the node was
    renamed to) and return its settings instances, in NODE_SETTINGS order."""
    out = []
    for cls in NODE_SETTINGS[kind]:
        values: dict[str, Any] = {}
        for info in fields_of(cls):
            descriptor = ParameterDescriptor(description=f"{info.doc} Accepts {info.requirement}.",
                                             dynamic_typing=info.optional)
            default = list(info.default) if info.sequence else info.default
            try:
                values[info.name] = node.declare_parameter(info.name, default, descriptor).value
            except Exception as e:  # rclpy raises InvalidParameterTypeException etc.
                raise ParameterError(f"parameter '{info.name}': {e}") from None
        try:
            out.append(cls(**values))
        except SettingError as e:
            raise ParameterError(f"parameter {e}") from None
    return tuple(out)


def as_dict(*settings) -> dict[str, Any]:
    """The values of several settings instances in one name -> value dict."""
    return {name: value for instance in settings for name, value in vars(instance).items()}


# Signals that stop a node in order (as Ctrl-C does): its close() runs while its context is
# still up, so a bridge's last zero-velocity command still goes out.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_node(factory: Callable[[], Node], args: Optional[list[str]] = None, threads: int = 1) -> int:
    """Create the node with rclpy, spin it until SIGINT/SIGTERM/SIGHUP or until it asks to stop
    (`node.finished` set), call its close() before rclpy shuts down, and return the exit code.
    A second signal during that orderly stop cuts it short."""
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop: list[int] = []

    def on_signal(signum, _frame) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    node = None
    executor = None
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
        while rclpy.ok() and not getattr(node, "finished", False) and not stop:
            executor.spin_once(timeout_sec=0.1)
        code = getattr(node, "exit_code", 0)
        if stop:
            node.get_logger().info(f"{signal.Signals(stop[0]).name}: stopping")
    except ParameterError as e:
        (node.get_logger() if node else rclpy.logging.get_logger("porl_ros")).fatal(str(e))
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    finally:
        try:
            if node is not None:
                close = getattr(node, "close", None)
                if close is not None:
                    close()
        finally:
            if executor is not None:
                executor.shutdown(timeout_sec=1.0)
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
    return code
