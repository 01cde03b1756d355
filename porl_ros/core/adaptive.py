"""Adaptive pre-sample length: end PORL's pre-sample stage once the critic has converged.

The paper fixes the pre-sample length T by hand and asks whether it could be chosen
adaptively. This criterion watches a few scalar training signals (e.g. the critic's TD
loss and its mean Q prediction), one value per check, and says "stop" when every signal
has plateaued:

* each signal is smoothed by averaging the last ``window`` checks;
* its relative change is |mean(last window) - mean(window before)| / max(|mean(window
  before)|, floor);
* a check is "flat" when every signal's relative change is below ``rel_tol``;
* the stage ends after ``patience`` consecutive flat checks, but never before
  ``min_steps`` env steps, and always at ``max_steps`` (the cap).

A signal that is still falling (or rising) steadily changes by more than ``rel_tol``
per window, so it keeps the stage going; noise around a level does not. Pure logic: no
torch, no ROS, so it is unit-tested on synthetic curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional

from .settings import NON_NEGATIVE, POSITIVE, Settings, setting


@dataclass
class AdaptiveConfig(Settings):
    """The adaptive pre-sample length (the experiment's `adaptive` variant)."""

    adaptive_min: int = setting(300, "Adaptive T: never end the pre-sample stage before this many env steps.",
                                NON_NEGATIVE)
    adaptive_max: int = setting(2000, "Adaptive T: always end it here (the cap).", POSITIVE)
    adaptive_check_every: int = setting(100, "Adaptive T: env steps between checks (signals are averaged "
                                             "over them).", POSITIVE)
    adaptive_window: int = setting(3, "Adaptive T: checks averaged per smoothed value.", POSITIVE)
    adaptive_rel_tol: float = setting(0.05, "Adaptive T: a check is flat when every signal's relative change "
                                            "per window is below this.", POSITIVE)
    adaptive_patience: int = setting(2, "Adaptive T: consecutive flat checks that end the stage.", POSITIVE)

    def criterion(self) -> "PlateauCriterion":
        return PlateauCriterion(self.adaptive_min, self.adaptive_max, self.adaptive_window, self.adaptive_rel_tol,
                                self.adaptive_patience)


_DEFAULT = AdaptiveConfig()


@dataclass
class PlateauCriterion:
    """Decide when a set of signals has stopped changing (see the module docstring)."""

    min_steps: int = _DEFAULT.adaptive_min
    max_steps: int = _DEFAULT.adaptive_max
    window: int = _DEFAULT.adaptive_window  # checks averaged per smoothed value
    rel_tol: float = _DEFAULT.adaptive_rel_tol
    patience: int = _DEFAULT.adaptive_patience  # consecutive flat checks needed
    floor: float = 1e-3  # denominator floor so a signal near zero does not look unstable
    history: dict[str, list[float]] = field(default_factory=dict, repr=False)
    flat_checks: int = 0
    stopped_at: Optional[int] = None
    last_changes: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("min_steps", "max_steps", "window", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "min_steps" else 1):
                raise ValueError(f"{name} must be an int >= {0 if name == 'min_steps' else 1}, got {v!r}")
        if self.max_steps < self.min_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps})")
        for name in ("rel_tol", "floor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")

    def relative_change(self, name: str) -> Optional[float]:
        """The signal's smoothed relative change, or None until it has 2 windows of history."""
        values = self.history.get(name, [])
        w = self.window
        if len(values) < 2 * w:
            return None
        now = sum(values[-w:]) / w
        before = sum(values[-2 * w:-w]) / w
        return abs(now - before) / max(abs(before), self.floor)

    def observe(self, env_steps: int, signals: Mapping[str, float]) -> bool:
        """Record one check's signals at `env_steps`; True when the stage should end now.

        Once it has returned True it keeps returning True (the decision is final).
        """
        if self.stopped_at is not None:
            return True
        if not signals:
            raise ValueError("signals must name at least one value")
        for name, value in signals.items():
            v = float(value)
            if not math.isfinite(v):
                raise ValueError(f"signal {name!r} is not finite: {value!r}")
            self.history.setdefault(name, []).append(v)
        changes = {name: self.relative_change(name) for name in signals}
        self.last_changes = {k: v for k, v in changes.items() if v is not None}
        flat = all(c is not None and c < self.rel_tol for c in changes.values())
        self.flat_checks = self.flat_checks + 1 if flat else 0
        if env_steps >= self.max_steps or (env_steps >= self.min_steps and self.flat_checks >= self.patience):
            self.stopped_at = int(env_steps)
            return True
        return False
