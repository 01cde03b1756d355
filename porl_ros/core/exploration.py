"""Epsilon-greedy for continuous actions, as PORL uses it in the presample stage.

With probability epsilon the executed action is drawn uniformly from the action box;
otherwise the policy's action (stochastic or mean: the caller decides) is executed.
The uniform actions widen the replay distribution the fresh critics are trained on.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .phases import FINETUNE, PRESAMPLE


class EpsilonSchedule:
    """Constant epsilon, or a linear decay from `start` to `end` over `decay_steps` steps.

    `end` defaults to `start` (constant); with decay_steps=0 the value is `end` throughout.
    """

    def __init__(self, start: float, end: Optional[float] = None, decay_steps: int = 0) -> None:
        end = start if end is None else end
        for name, v in (("start", start), ("end", end)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"epsilon {name} must be in [0, 1], got {v!r}")
        if not isinstance(decay_steps, int) or decay_steps < 0:
            raise ValueError(f"decay_steps must be an int >= 0, got {decay_steps!r}")
        self.start, self.end, self.decay_steps = float(start), float(end), decay_steps

    @classmethod
    def constant(cls, epsilon: float) -> "EpsilonSchedule":
        return cls(epsilon)

    @classmethod
    def linear(cls, start: float, end: float, decay_steps: int) -> "EpsilonSchedule":
        return cls(start, end, decay_steps)

    def value(self, step: int) -> float:
        """Epsilon at this (0-based) step; after the decay it stays at `end`."""
        if step >= self.decay_steps:
            return self.end
        frac = max(step, 0) / self.decay_steps
        return self.start + frac * (self.end - self.start)


class StagedEpsilon:
    """One schedule per PORL stage; each is indexed by the step count inside its stage."""

    def __init__(self, presample: EpsilonSchedule, finetune: EpsilonSchedule) -> None:
        self.schedules = {PRESAMPLE: presample, FINETUNE: finetune}

    def value(self, phase: str, step_in_phase: int) -> float:
        if phase not in self.schedules:
            raise ValueError(f"phase must be 'presample' or 'finetune', got {phase!r}")
        return self.schedules[phase].value(step_in_phase)


class EpsilonGreedy:
    """Replace the policy action by a uniform one in [low, high] with probability epsilon."""

    def __init__(self, action_low: Sequence[float] | np.ndarray, action_high: Sequence[float] | np.ndarray,
                 seed: Optional[int] = None, rng: Optional[np.random.Generator] = None) -> None:
        self.low = np.asarray(action_low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(action_high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or not np.all(self.low < self.high) \
                or not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError("action bounds must be finite, of equal length, with low < high")
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def __call__(self, policy_action: np.ndarray, epsilon: float) -> tuple[np.ndarray, bool]:
        """Return (executed action, exploratory?). The policy action is clipped to the box."""
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        a = np.asarray(policy_action)
        if a.shape != self.low.shape:
            raise ValueError(f"policy_action must have shape {self.low.shape}, got {a.shape}")
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32
        if self.rng.random() < epsilon:
            return self.rng.uniform(self.low, self.high).astype(dtype), True
        return np.clip(a, self.low, self.high).astype(dtype), False
