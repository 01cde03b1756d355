"""diagnostic_msgs/DiagnosticArray on /diagnostics for any porl_ros node.

Each node creates one `NodeDiagnostics` with a callback that returns a `Health`
(level, one-line message, key/values); the helper calls it at `diagnostics_rate_hz`
and publishes the result, so `ros2 topic echo /diagnostics`, rqt_runtime_monitor or a
diagnostic_aggregator shows every node's message rates, queue/backlog sizes, rejected
inputs and staleness. `RateMeter` turns event counters into rates between two reports.

rclpy does not expose how many samples wait in a DDS reader's queue, so "queue depth"
here means the node's own backlog (pending observation, unacknowledged transition,
replay size) plus the number of matched peers, which is what tells a stalled graph apart.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}

DIAGNOSTICS_TOPIC = "/diagnostics"
# Reliable (not best effort like TrainingStatus): diagnostic_aggregator and rqt subscribe
# reliably, and a best-effort publisher would not match them at all.
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)


@dataclass
class Health:
    """What a node reports about itself: level, one line, and named values."""

    level: int = OK
    message: str = "ok"
    values: dict = field(default_factory=dict)

    def warn(self, why: str) -> None:
        """Raise to WARN (never lowers an ERROR); every reason stays in the message."""
        self._raise(WARN, why)

    def error(self, why: str) -> None:
        self._raise(ERROR, why)

    def _raise(self, level: int, why: str) -> None:
        if self.level == OK:
            self.message = why
        elif level > self.level:
            self.message = f"{why}; {self.message}"  # the worst reason first
        else:
            self.message = f"{self.message}; {why}"
        self.level = max(self.level, level)


class RateMeter:
    """Counts events; `rate()` is the events per second since the previous `rate()` call."""

    def __init__(self) -> None:
        self.count = 0
        self.last_event: Optional[float] = None  # time.monotonic() of the newest event
        self._sample_count = 0
        self._sample_time = time.monotonic()

    def tick(self, n: int = 1) -> None:
        self.count += n
        self.last_event = time.monotonic()

    def rate(self) -> float:
        now = time.monotonic()
        elapsed = now - self._sample_time
        value = (self.count - self._sample_count) / elapsed if elapsed > 0 else 0.0
        self._sample_count, self._sample_time = self.count, now
        return value

    def age(self) -> float:
        """Seconds since the newest event (inf when there was none)."""
        return math.inf if self.last_event is None else time.monotonic() - self.last_event


def seconds_since(monotonic_time: Optional[float]) -> float:
    return math.inf if not monotonic_time else time.monotonic() - monotonic_time


def _format(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def health_to_status(health: Health, name: str, hardware_id: str = "") -> DiagnosticStatus:
    status = DiagnosticStatus(name=name, message=health.message, hardware_id=hardware_id)
    status.level = bytes([health.level])  # `byte` fields are bytes of length 1 in rclpy
    status.values = [KeyValue(key=str(k), value=_format(v)) for k, v in health.values.items()]
    return status


class NodeDiagnostics:
    """Publishes `check()`'s Health for `node` on /diagnostics every 1/rate_hz seconds.

    A check that raises is itself reported as ERROR instead of killing the node's timer.
    """

    def __init__(self, node: Node, check: Callable[[], Health], rate_hz: float = 1.0,
                 hardware_id: str = "", topic: str = DIAGNOSTICS_TOPIC) -> None:
        self.node = node
        self.check = check
        # The fully qualified name tells namespaced bridges (bridge_0, bridge_1) apart.
        self.name = f"porl_ros: {node.get_fully_qualified_name().lstrip('/')}"
        self.hardware_id = hardware_id
        self.publisher = node.create_publisher(DiagnosticArray, topic, DIAGNOSTICS_QOS) if rate_hz > 0 else None
        self.timer = node.create_timer(1.0 / rate_hz, self.publish) if rate_hz > 0 else None

    def publish(self) -> None:
        try:
            health = self.check()
        except Exception as e:  # a broken check must show up, not stop the timer
            health = Health(ERROR, f"diagnostics check failed: {type(e).__name__}: {e}")
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [health_to_status(health, self.name, self.hardware_id)]
        self.publisher.publish(msg)


def learner_health(summary: dict, *, done: bool, seconds_since_transition: float, seconds_since_weights: float,
                   transitions_per_second: float, stall_warn_s: float = 10.0, last_guard_event: str = "") -> Health:
    """The learner node's Health from `PorlLearner.summary()` plus its own timing.

    WARN when transitions stop arriving mid-run or some were missing (seq gaps) or refused,
    and when the regression guard has had to restore the best actor.
    """
    values = {key: summary[key] for key in (
        "phase", "env_steps", "episodes", "gradient_updates", "policy_version", "replay_size",
        "updates_per_second", "env_steps_per_second", "effective_utd", "success_rate",
        "q_calibration_gap", "seq_gaps", "rejected_transitions", "guard_restores", "actor_lr",
        "guard_baseline_success", "guard_window_success") if key in summary}
    values["transitions_per_second"] = transitions_per_second
    values["seconds_since_last_transition"] = seconds_since_transition
    values["seconds_since_last_weights"] = seconds_since_weights
    values["done"] = done
    health = Health(OK, "finished" if done else f"{summary.get('phase', '')}: training", values)
    if not done and summary.get("env_steps", 0) > 0 and seconds_since_transition > stall_warn_s:
        health.warn(f"no transition for {seconds_since_transition:.0f} s (bridges stalled?)")
    if not done and summary.get("env_steps", 0) == 0 and math.isinf(seconds_since_transition):
        health.message = "waiting for the first transition"
    if summary.get("seq_gaps", 0):
        health.warn(f"{summary['seq_gaps']} transition(s) missing from the bridges' sequences")
    if summary.get("rejected_transitions", 0):
        health.warn(f"{summary['rejected_transitions']} invalid transition(s) refused")
    if summary.get("guard_restores", 0):
        health.warn(f"regression guard restored the best actor {summary['guard_restores']} time(s)"
                    + (f"; last: {last_guard_event}" if last_guard_event else ""))
    return health
