"""How an action is chosen while fine-tuning: the policy's action, then PORL's epsilon-greedy.

With probability epsilon the executed action is drawn uniformly from the action box;
otherwise the policy's action (its mean or a sample, per stage) is executed. The uniform
actions widen the replay distribution the fresh critics are trained on. With
`explore_hold_max` > 1 a uniform action is held for a few steps (temporally-extended
epsilon-greedy, Dabney et al. 2021): one fresh uniform action per step averages out within
a few steps, a held one moves an arm somewhere the policy would not go.

`ActionChooser` is that decision, once: the exploration controller node calls it around its
GetAction request, and `porl-ros experiment` around the actor in its own process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .phases import FINETUNE, PRESAMPLE
from .settings import AT_LEAST_ONE, NON_NEGATIVE, PROBABILITY, Settings, one_of, setting

MEAN, SAMPLE = "mean", "sample"  # which policy action a stage executes


@dataclass
class ExplorationConfig(Settings):
    """PORL's exploration per stage (the exploration controller's algorithm settings)."""

    presample_epsilon: float = setting(0.3, "Epsilon-greedy in the pre-sample stage (at its start, with a "
                                            "decay).", PROBABILITY)
    presample_epsilon_end: Optional[float] = setting(None, "Epsilon at the end of a linear decay in pre-sample; "
                                                           "none: constant presample_epsilon.", PROBABILITY)
    presample_epsilon_decay_steps: int = setting(0, "Steps of that decay (0: no decay).", NON_NEGATIVE)
    finetune_epsilon: float = setting(0.0, "Epsilon-greedy in the fine-tune stage (SAC's own sampling "
                                           "explores).", PROBABILITY)
    finetune_epsilon_end: Optional[float] = setting(None, "Epsilon at the end of a linear decay in fine-tune; "
                                                          "none: constant finetune_epsilon.", PROBABILITY)
    finetune_epsilon_decay_steps: int = setting(0, "Steps of that decay (0: no decay).", NON_NEGATIVE)
    presample_policy_action: str = setting(MEAN, "Policy action executed in pre-sample: 'mean' or 'sample'.",
                                           one_of(MEAN, SAMPLE))
    finetune_policy_action: str = setting(SAMPLE, "Policy action executed in fine-tune: 'mean' or 'sample' "
                                                  "(SAC).", one_of(MEAN, SAMPLE))
    explore_hold_max: int = setting(1, "An exploratory uniform action is held for n steps, n drawn with "
                                       "P(n) ~ 1/n^2 on 1..this (temporally-extended epsilon-greedy; a new "
                                       "episode ends a hold); 1: a fresh uniform action per step.", AT_LEAST_ONE)

    def schedules(self) -> "StagedEpsilon":
        return StagedEpsilon(
            EpsilonSchedule(self.presample_epsilon, self.presample_epsilon_end, self.presample_epsilon_decay_steps),
            EpsilonSchedule(self.finetune_epsilon, self.finetune_epsilon_end, self.finetune_epsilon_decay_steps))


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
    """Replace the policy action by a uniform one in [low, high] with probability epsilon; with
    hold_max > 1, keep executing that uniform action for n steps, P(n) ~ 1/n^2 on 1..hold_max."""

    def __init__(self, action_low: Sequence[float] | np.ndarray, action_high: Sequence[float] | np.ndarray,
                 seed: Optional[int] = None, rng: Optional[np.random.Generator] = None, hold_max: int = 1) -> None:
        self.low = np.asarray(action_low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(action_high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or not np.all(self.low < self.high) \
                or not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError("action bounds must be finite, of equal length, with low < high")
        if not isinstance(hold_max, (int, np.integer)) or hold_max < 1:
            raise ValueError(f"hold_max must be an int >= 1, got {hold_max!r}")
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        lengths = np.arange(1, hold_max + 1)
        self.hold_probabilities = (1.0 / lengths**2) / np.sum(1.0 / lengths**2)
        self.held: Optional[np.ndarray] = None
        self.hold_left = 0

    def end_hold(self) -> None:
        """Forget a held exploratory action (a new episode starts)."""
        self.held, self.hold_left = None, 0

    def __call__(self, policy_action: np.ndarray, epsilon: float) -> tuple[np.ndarray, bool]:
        """Return (executed action, exploratory?). The policy action is clipped to the box."""
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        a = np.asarray(policy_action)
        if a.shape != self.low.shape:
            raise ValueError(f"policy_action must have shape {self.low.shape}, got {a.shape}")
        dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float32
        if self.hold_left > 0:
            self.hold_left -= 1
            return self.held.astype(dtype), True
        if self.rng.random() < epsilon:
            uniform = self.rng.uniform(self.low, self.high)
            if len(self.hold_probabilities) > 1:  # no extra draw at hold_max 1: seeded runs stay as they were
                self.held = uniform
                self.hold_left = int(self.rng.choice(len(self.hold_probabilities), p=self.hold_probabilities))
            return uniform.astype(dtype), True
        return np.clip(a, self.low, self.high).astype(dtype), False


# policy(observation, deterministic) -> action: the actor in-process, or a GetAction call
Policy = Callable[[np.ndarray, bool], np.ndarray]


class ActionChooser:
    """The exploration controller's decision for one observation in a given stage: which policy
    action to ask for (`deterministic`), then epsilon-greedy with the stage's schedule (`explore`),
    each stage's schedule indexed by the actions chosen in that stage so far."""

    def __init__(self, config: ExplorationConfig, action_low, action_high, seed: Optional[int] = None) -> None:
        self.config = config
        self.greedy = EpsilonGreedy(action_low, action_high, seed=seed, hold_max=config.explore_hold_max)
        self.epsilon = config.schedules()
        self.episode: Optional[int] = None
        self.steps_in_phase = {PRESAMPLE: 0, FINETUNE: 0}
        self.actions = 0
        self.exploratory_actions = 0

    def deterministic(self, phase: str) -> bool:
        """Whether this stage executes the policy's mean action (else a sample)."""
        mode = self.config.presample_policy_action if phase == PRESAMPLE else self.config.finetune_policy_action
        return mode == MEAN

    def current_epsilon(self, phase: str) -> float:
        return self.epsilon.value(phase, self.steps_in_phase[phase])

    def explore(self, phase: str, policy_action: np.ndarray,
                episode: Optional[int] = None) -> tuple[np.ndarray, bool]:
        """(executed action, exploratory?) for the policy's action in this stage (in `episode`:
        a held exploratory action does not carry over into the next one)."""
        if episode != self.episode:
            self.greedy.end_hold()
            self.episode = episode
        epsilon = self.current_epsilon(phase)
        self.steps_in_phase[phase] += 1
        executed, exploratory = self.greedy(policy_action, epsilon)
        self.actions += 1
        self.exploratory_actions += int(exploratory)
        return executed, exploratory

    def choose(self, phase: str, observation: np.ndarray, policy: Policy,
               episode: Optional[int] = None) -> tuple[np.ndarray, bool]:
        """Both steps with a policy at hand (in one process)."""
        return self.explore(phase, policy(observation, self.deterministic(phase)), episode)
