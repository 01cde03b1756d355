"""Safety rules between a policy's action and a real arm's velocity command (no rclpy).

Every command the arm bridge sends goes through one of the two filters here, in this
order of priority (a later rule wins, because stopping is always allowed):
  1. velocity clamp        |v_i| <= max_velocity_i (or linear / angular speed limits)
  2. action-rate limit     |v_i - previous_i| <= max_change_i per control period
  3. position limits       a joint within `margin` of a position limit is not commanded
                           further outward, and never commanded to cross into that margin
                           within one period (joint mode)
     workspace box         the twist component along an axis that would leave the box is
                           zeroed, and an end effector that drifted into the margin or out of
                           the box is pulled back in (Cartesian mode, position from the driver)
`Watchdog` decides whether any motion is allowed at all (fresh inputs), and
`SafetyMonitor` adds the emergency-stop latch on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _vector(values, size: int, name: str) -> np.ndarray:
    """A float64 vector of `size` values; a single value is repeated for every element."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape[0] == 1 and size > 1:
        array = np.repeat(array, size)
    if array.shape[0] != size:
        raise ValueError(f"{name} has {array.shape[0]} values, expected {size} (or 1 for all)")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


@dataclass(frozen=True)
class JointLimits:
    """Per-joint limits of a velocity-commanded arm. `max_change` is per control period."""

    position_lower: np.ndarray
    position_upper: np.ndarray
    max_velocity: np.ndarray
    max_change: np.ndarray
    position_margin: float
    period: float

    @classmethod
    def build(cls, num_joints: int, position_lower, position_upper, max_velocity, max_change,
              position_margin: float, period: float) -> "JointLimits":
        lower = _vector(position_lower, num_joints, "joint_position_lower")
        upper = _vector(position_upper, num_joints, "joint_position_upper")
        velocity = _vector(max_velocity, num_joints, "max_joint_velocity")
        change = _vector(max_change, num_joints, "max_joint_velocity_change")
        if np.any(upper - lower <= 2 * position_margin):
            bad = int(np.argmax(upper - lower <= 2 * position_margin))
            raise ValueError(f"joint_position_lower/upper: joint {bad} range [{lower[bad]}, {upper[bad]}] "
                             f"must be wider than 2 * joint_position_margin ({position_margin})")
        if np.any(velocity <= 0) or np.any(change <= 0):
            raise ValueError("max_joint_velocity and max_joint_velocity_change must be > 0")
        if position_margin < 0 or period <= 0:
            raise ValueError("joint_position_margin must be >= 0 and the control period > 0")
        return cls(lower, upper, velocity, change, float(position_margin), float(period))


@dataclass(frozen=True)
class CartesianLimits:
    """Speed, rate and workspace limits of a Cartesian (twist) commanded arm."""

    max_linear_speed: float  # per axis, m/s
    max_angular_speed: float  # per axis, rad/s
    max_linear_change: float  # per axis per control period
    max_angular_change: float
    workspace_low: np.ndarray  # box of the end-effector position, in the command frame
    workspace_high: np.ndarray
    workspace_margin: float
    period: float

    @classmethod
    def build(cls, max_linear_speed, max_angular_speed, max_linear_change, max_angular_change,
              workspace_low, workspace_high, workspace_margin, period) -> "CartesianLimits":
        low = _vector(workspace_low, 3, "workspace_min")
        high = _vector(workspace_high, 3, "workspace_max")
        if np.any(high - low <= 2 * workspace_margin):
            raise ValueError("workspace_min/max: the box must be wider than 2 * workspace_margin on every axis")
        for name, value in (("max_linear_speed", max_linear_speed), ("max_angular_speed", max_angular_speed),
                            ("max_linear_change", max_linear_change), ("max_angular_change", max_angular_change)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        return cls(float(max_linear_speed), float(max_angular_speed), float(max_linear_change),
                   float(max_angular_change), low, high, float(workspace_margin), float(period))


@dataclass
class FilterReport:
    """Which rules changed a command (for counters and diagnostics)."""

    velocity_clamped: bool = False
    rate_limited: bool = False
    position_limited: bool = False
    workspace_limited: bool = False


def check_finite(values, size: int, name: str) -> np.ndarray:
    """The command as float64, or ValueError naming `name` (wrong size, NaN or inf)."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape[0] != size:
        raise ValueError(f"{name} has {array.shape[0]} values, expected {size}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def _rate_limit(command: np.ndarray, previous: np.ndarray, max_change) -> tuple[np.ndarray, bool]:
    limited = np.clip(command, previous - max_change, previous + max_change)
    return limited, bool(np.any(limited != command))


def filter_joint_velocity(command, positions, previous, limits: JointLimits) -> tuple[np.ndarray, FilterReport]:
    """The safe joint velocity for `command` given measured `positions` and the previous
    command sent; raises ValueError on NaN / wrong size rather than guessing."""
    n = limits.max_velocity.shape[0]
    command = check_finite(command, n, "joint velocity command")
    positions = check_finite(positions, n, "joint positions")
    previous = check_finite(previous, n, "previous joint velocity command")
    report = FilterReport()
    safe = np.clip(command, -limits.max_velocity, limits.max_velocity)
    report.velocity_clamped = bool(np.any(safe != command))
    safe, report.rate_limited = _rate_limit(safe, previous, limits.max_change)
    # Headroom to the inner edge of the margin: a joint may approach it, never cross it in
    # one period, and inside the margin (or beyond the limit) only move back inward.
    headroom_up = np.maximum(limits.position_upper - limits.position_margin - positions, 0.0) / limits.period
    headroom_down = np.maximum(positions - (limits.position_lower + limits.position_margin), 0.0) / limits.period
    bounded = np.clip(safe, -headroom_down, headroom_up)
    report.position_limited = bool(np.any(bounded != safe))
    # Re-apply the speed clamp last so no rule above can ever exceed it.
    return np.clip(bounded, -limits.max_velocity, limits.max_velocity), report


def filter_twist(linear, angular, ee_position, previous_linear, previous_angular,
                 limits: CartesianLimits) -> tuple[np.ndarray, np.ndarray, FilterReport]:
    """The safe twist (linear, angular) for a command given the end-effector position."""
    linear = check_finite(linear, 3, "linear velocity command")
    angular = check_finite(angular, 3, "angular velocity command")
    ee_position = check_finite(ee_position, 3, "end-effector position")
    report = FilterReport()
    safe_linear = np.clip(linear, -limits.max_linear_speed, limits.max_linear_speed)
    safe_angular = np.clip(angular, -limits.max_angular_speed, limits.max_angular_speed)
    report.velocity_clamped = bool(np.any(safe_linear != linear) or np.any(safe_angular != angular))
    previous_linear = check_finite(previous_linear, 3, "previous linear")
    safe_linear, linear_limited = _rate_limit(safe_linear, previous_linear,
                                              limits.max_linear_change)
    safe_angular, angular_limited = _rate_limit(safe_angular, check_finite(previous_angular, 3, "previous angular"),
                                                limits.max_angular_change)
    report.rate_limited = linear_limited or angular_limited
    inner_high = limits.workspace_high - limits.workspace_margin
    inner_low = limits.workspace_low + limits.workspace_margin
    headroom_up = np.maximum(inner_high - ee_position, 0.0) / limits.period
    headroom_down = np.maximum(ee_position - inner_low, 0.0) / limits.period
    # At or past a face, the outward component is zeroed; short of it, it is slowed so the
    # next period cannot cross into the margin.
    bounded = np.clip(safe_linear, -headroom_down, headroom_up)
    # Drifted into the margin or out of the box (the driver, a collision, a drifting
    # controller): pull back inward, at a speed that would close the gap in one period,
    # within the speed limit and ramped by the rate limit from the previous command.
    over_high = np.maximum(ee_position - inner_high, 0.0)
    over_low = np.maximum(inner_low - ee_position, 0.0)
    pull = np.clip((over_low - over_high) / limits.period, -limits.max_linear_speed, limits.max_linear_speed)
    pull = np.clip(pull, previous_linear - limits.max_linear_change, previous_linear + limits.max_linear_change)
    bounded = np.where(over_high > 0, np.minimum(bounded, np.minimum(pull, 0.0)), bounded)
    bounded = np.where(over_low > 0, np.maximum(bounded, np.maximum(pull, 0.0)), bounded)
    report.workspace_limited = bool(np.any(bounded != safe_linear))
    bounded = np.clip(bounded, -limits.max_linear_speed, limits.max_linear_speed)
    return bounded, safe_angular, report


def proportional_step(target, current, gain: float, max_speed) -> np.ndarray:
    """One step of a proportional velocity controller toward `target`, speed-clamped."""
    target = np.asarray(target, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    max_speed = np.asarray(max_speed, dtype=np.float64)
    return np.clip(gain * (target - current), -max_speed, max_speed)


@dataclass
class Watchdog:
    """Motion is allowed only while every required input arrived within `timeout_s`.

    Inputs are named ("action", "joint_state", "ee_pose"); one never fed counts as stale.
    """

    timeout_s: float
    last_seen: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"watchdog timeout must be > 0, got {self.timeout_s}")

    def feed(self, name: str, now: float) -> None:
        self.last_seen[name] = now

    def stale(self, now: float, required: tuple[str, ...]) -> list[str]:
        """The required inputs that are missing or older than the timeout."""
        return [name for name in required
                if name not in self.last_seen or now - self.last_seen[name] > self.timeout_s]


# States of the SafetyMonitor.
RUNNING = "running"  # commands may move the arm
WATCHDOG_STOP = "watchdog_stop"  # an input went stale: zero velocity until it is fresh again
EMERGENCY_STOP = "emergency_stop"  # latched by the operator: zero velocity until released


class SafetyMonitor:
    """The stop state machine: RUNNING <-> WATCHDOG_STOP (automatic), any -> EMERGENCY_STOP
    (operator), EMERGENCY_STOP -> RUNNING only by `release_emergency_stop`."""

    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self.state = RUNNING
        self.stale_inputs: list[str] = []
        self.watchdog_trips = 0

    def engage_emergency_stop(self) -> None:
        self.state = EMERGENCY_STOP

    def release_emergency_stop(self) -> None:
        if self.state == EMERGENCY_STOP:
            self.state = RUNNING

    def update(self, now: float, required: tuple[str, ...]) -> str:
        """Re-evaluate the watchdog for the inputs the current activity needs."""
        if self.state == EMERGENCY_STOP:
            return self.state
        self.stale_inputs = self.watchdog.stale(now, required)
        if self.stale_inputs and self.state == RUNNING:
            self.watchdog_trips += 1
            self.state = WATCHDOG_STOP
        elif not self.stale_inputs and self.state == WATCHDOG_STOP:
            self.state = RUNNING
        return self.state

    @property
    def motion_allowed(self) -> bool:
        return self.state == RUNNING
