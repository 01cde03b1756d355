"""The one interface every environment back-end implements.

Small on purpose: the embedded simulator, a Gymnasium environment, RLBench and a real
arm all fit behind it, so the bridge node never knows which one it drives.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EnvSpec:
    """Sizes, bounds and names of an environment, as the learner and bridge need them."""

    env_id: str
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    max_episode_steps: int
    # Names of the observation vector's parts in order, e.g. ("hand_pos[3]", ...).
    observation_layout: tuple[str, ...] = ()
    # Joint names when the back-end has joints (published as sensor_msgs/JointState).
    joint_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        low = np.asarray(self.action_low, dtype=np.float32).reshape(-1)
        high = np.asarray(self.action_high, dtype=np.float32).reshape(-1)
        if self.obs_dim <= 0 or self.act_dim <= 0:
            raise ValueError(f"{self.env_id}: obs_dim and act_dim must be positive, "
                             f"got {self.obs_dim}, {self.act_dim}")
        if low.shape != (self.act_dim,) or high.shape != (self.act_dim,):
            raise ValueError(f"{self.env_id}: action bounds must have {self.act_dim} values, "
                             f"got {low.shape[0]} and {high.shape[0]}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
            raise ValueError(f"{self.env_id}: action bounds must be finite with low < high")
        if self.max_episode_steps <= 0:
            raise ValueError(f"{self.env_id}: max_episode_steps must be positive")
        object.__setattr__(self, "action_low", low)
        object.__setattr__(self, "action_high", high)

    def checked_action(self, action, dtype=np.float32) -> np.ndarray:
        """`action` as a flat array of `dtype`, clipped to the bounds; a wrong size or a NaN/inf
        raises ValueError naming the environment (every back-end's step starts with this)."""
        act = np.asarray(action, dtype=dtype).reshape(-1)
        if act.shape != (self.act_dim,):
            raise ValueError(f"{self.env_id}: action must have {self.act_dim} values, got {act.shape[0]}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"{self.env_id}: action has non-finite values (NaN or inf): {act}")
        return np.clip(act, self.action_low, self.action_high).astype(dtype, copy=False)


@dataclass
class StepResult:
    """What one environment step returns."""

    observation: np.ndarray
    reward: float
    terminated: bool  # a true end of the task (no bootstrapping past it)
    truncated: bool  # time limit or an aborted step (bootstrapping is still valid)
    success: bool
    info: dict[str, Any] = field(default_factory=dict)


class EnvSetupError(RuntimeError):
    """A back-end's simulator or libraries are missing or misconfigured; the message says what to
    do. The bridge and `porl-ros run` turn it into one clear error line and a non-zero exit."""


class EnvBackend(abc.ABC):
    """An environment the bridge can drive.

    `step` takes an action inside `spec`'s bounds; the back-end owns time limits and
    reports `truncated` when its episode length is reached.
    """

    spec: EnvSpec

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start a new episode and return the first observation (float32, obs_dim)."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> StepResult:
        """Execute one action."""

    @property
    def has_expert(self) -> bool:
        """Whether `expert_action` is available (for demonstrations)."""
        return False

    def expert_action(self, observation: np.ndarray) -> np.ndarray:
        """A scripted expert's action for `observation`, if the back-end has one."""
        raise NotImplementedError(f"{self.spec.env_id} has no scripted expert")

    def markers(self) -> dict[str, np.ndarray]:
        """Named 3-D points worth showing in rviz (e.g. 'end_effector', 'goal'); may be empty."""
        return {}

    def joint_positions(self) -> np.ndarray | None:
        """Joint positions matching `spec.joint_names`, or None without joints."""
        return None

    def close(self) -> None:
        """Release the simulator or hardware."""
