"""Regression guard: never let fine-tuning leave a robot worse off than the policy it was given.

The guard knows how the frozen pre-trained policy did in the pre-sample stage (its
episodes' success rate and mean return: the baseline). In fine-tuning it judges the
policy on windows of `window` consecutive episodes. A window whose success rate falls
more than `success_margin` below the baseline's, or whose mean return falls more than
`return_margin` x |baseline return| below it, asks for a restore: the learner puts back
the best actor seen so far (the pre-trained one until a window beats it), publishes it
again and backs off. A window that beats the best so far makes the actor at its end the
new best. No rclpy here: PorlLearner owns the guard, the learner node reports it.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Optional

from .phases import FINETUNE, PRESAMPLE


@dataclass(frozen=True)
class WindowScore:
    """How the policy did over a window of episodes (or the baseline)."""

    success_rate: float
    mean_return: float
    episodes: int

    def beats(self, other: "WindowScore") -> bool:
        """Better success first, then better return."""
        return (self.success_rate, self.mean_return) > (other.success_rate, other.mean_return)


@dataclass(frozen=True)
class GuardVerdict:
    """What one finished fine-tuning episode means for the policy."""

    restore: bool = False  # restore the best actor now
    new_best: bool = False  # the current actor is the new best
    reason: str = ""


class RegressionGuard:
    """Baseline from pre-sample episodes; windows of fine-tune episodes judged against it."""

    def __init__(self, window: int, success_margin: float, return_margin: float) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if success_margin < 0 or return_margin < 0:
            raise ValueError("success_margin and return_margin must be >= 0")
        self.window, self.success_margin, self.return_margin = window, success_margin, return_margin
        self.baseline_episodes = 0
        self.baseline_successes = 0
        self.baseline_return_sum = 0.0
        self.recent: collections.deque = collections.deque(maxlen=window)  # (success, return)
        self.best: Optional[WindowScore] = None  # None: the pre-trained actor (the baseline) is best
        self.restores = 0
        self.last_window: Optional[WindowScore] = None

    @property
    def baseline(self) -> Optional[WindowScore]:
        if not self.baseline_episodes:
            return None
        return WindowScore(self.baseline_successes / self.baseline_episodes,
                           self.baseline_return_sum / self.baseline_episodes, self.baseline_episodes)

    def observe(self, phase: str, success: bool, episode_return: float) -> GuardVerdict:
        """Account for one finished episode of the given phase."""
        if phase == PRESAMPLE:
            self.baseline_episodes += 1
            self.baseline_successes += int(bool(success))
            self.baseline_return_sum += float(episode_return)
            return GuardVerdict()
        if phase != FINETUNE:
            raise ValueError(f"phase must be {PRESAMPLE!r} or {FINETUNE!r}, got {phase!r}")
        baseline = self.baseline
        if baseline is None:
            return GuardVerdict()  # T = 0 or no finished pre-sample episode: nothing to compare with
        self.recent.append((bool(success), float(episode_return)))
        if len(self.recent) < self.window:
            return GuardVerdict()
        score = WindowScore(sum(s for s, _ in self.recent) / self.window,
                            sum(r for _, r in self.recent) / self.window, self.window)
        self.last_window = score
        self.recent.clear()  # windows do not overlap: each verdict is about new episodes
        reasons = []
        if score.success_rate < baseline.success_rate - self.success_margin:
            reasons.append(f"success {score.success_rate:.2f} over the last {self.window} episodes is more than "
                           f"{self.success_margin:.2f} below the pre-trained policy's {baseline.success_rate:.2f}")
        if score.mean_return < baseline.mean_return - self.return_margin * abs(baseline.mean_return):
            reasons.append(f"mean return {score.mean_return:.1f} over the last {self.window} episodes is more than "
                           f"{self.return_margin:.0%} below the pre-trained policy's {baseline.mean_return:.1f}")
        if reasons:
            self.restores += 1
            return GuardVerdict(restore=True, reason="; ".join(reasons))
        if score.beats(self.best or baseline):
            self.best = score
            return GuardVerdict(new_best=True)
        return GuardVerdict()

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        """Plain JSON data (for the learner's bookkeeping state)."""
        def score(s: Optional[WindowScore]):
            return None if s is None else [s.success_rate, s.mean_return, s.episodes]
        return {"baseline": [self.baseline_episodes, self.baseline_successes, self.baseline_return_sum],
                "recent": [list(item) for item in self.recent], "best": score(self.best),
                "last_window": score(self.last_window), "restores": self.restores}

    def load_state(self, state: dict) -> None:
        def score(v) -> Optional[WindowScore]:
            return None if v is None else WindowScore(float(v[0]), float(v[1]), int(v[2]))
        episodes, successes, total = state["baseline"]
        self.baseline_episodes, self.baseline_successes = int(episodes), int(successes)
        self.baseline_return_sum = float(total)
        self.recent.clear()
        self.recent.extend((bool(s), float(r)) for s, r in state["recent"])
        self.best, self.last_window = score(state["best"]), score(state["last_window"])
        self.restores = int(state["restores"])
