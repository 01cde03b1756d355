"""The environment side of one fine-tuning step, and the step itself, without ROS.

`EpisodeBook` numbers a bridge's transitions (gap-free `seq`, episode, step in episode) and
keeps the return and success of the episode in progress: both bridges (sim and arm) use it.
`EnvStepper` drives an environment back-end with it: the action clamped to the bounds, one
env step, seeded resets (episode k starts from seed + k). The sim bridge node runs one;
`fine_tuning_step` runs one step of the whole loop in one process (choose the action,
explore, step, store, train): what the graph's controller, bridge and learner do in turn,
and what `porl-ros experiment` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .settings import POSITIVE, Settings, setting


@dataclass
class EpisodeSettings(Settings):
    """How a bridge cuts its stream of steps into episodes."""

    max_episode_steps: int = setting(200, "Episode length (time-limit truncation).", POSITIVE)
    terminate_on_success: bool = setting(False, "End an episode (terminated) at the first success. Off by "
                                                "default: with a dense reward a terminal success state is worth "
                                                "0 to the critic, which teaches it that succeeding is bad.")


@dataclass(frozen=True)
class EpisodeSummary:
    episode: int
    episode_return: float
    success: bool


class EpisodeBook:
    """Numbers and running totals of a bridge's transitions."""

    def __init__(self, first_seq: int = 0, first_episode: int = 0) -> None:
        self.seq = int(first_seq)  # seq of the next transition (a resumed run continues its numbers)
        self.episode = int(first_episode)
        self.step = 0  # step of the next transition inside its episode
        self.episode_return = 0.0
        self.episode_success = False
        self.episodes = 0  # finished episodes
        self.successes = 0

    def record(self, reward: float, success: bool) -> tuple[int, int, int]:
        """(seq, episode, step) of a new transition; its reward and success count toward the episode."""
        numbers = (self.seq, self.episode, self.step)
        self.seq += 1
        self.episode_return += float(reward)
        self.episode_success |= bool(success)
        return numbers

    def advance(self, episode_over: bool) -> Optional[EpisodeSummary]:
        """After a recorded transition: the next step, or the next episode (its summary returned)."""
        if episode_over:
            return self.end_episode()
        self.step += 1
        return None

    def end_episode(self) -> EpisodeSummary:
        """Close the episode in progress (also without a last transition, e.g. an emergency stop)."""
        summary = EpisodeSummary(self.episode, self.episode_return, self.episode_success)
        self.episodes += 1
        self.successes += int(self.episode_success)
        self.episode += 1
        self.step = 0
        self.episode_return = 0.0
        self.episode_success = False
        return summary


@dataclass
class StepRecord:
    """One transition as the learner receives it, plus the episode it closed (if any)."""

    seq: int
    episode: int
    step: int
    state: np.ndarray
    action: np.ndarray
    reward: float
    next_state: np.ndarray
    terminated: bool
    truncated: bool
    success: bool
    episode_end: Optional[EpisodeSummary] = None


def open_env(env_id: str, settings: EpisodeSettings, seed: int):
    """The environment back-end a bridge drives (porl_ros.envs is imported only here)."""
    from porl_ros.envs.registry import make_env
    return make_env(env_id, max_episode_steps=settings.max_episode_steps, seed=seed,
                    terminate_on_success=settings.terminate_on_success)


class EnvStepper:
    """Runs an environment back-end's episodes step by step (`state` is the observation to act on)."""

    def __init__(self, env, seed: int, first_seq: int = 0, first_episode: int = 0) -> None:
        self.env = env
        self.spec = env.spec
        self.seed = int(seed)
        self.book = EpisodeBook(first_seq, first_episode)
        # Episode k is seeded seed + k, also when a resumed run starts at k > 0 (no seed used twice).
        self.state = env.reset(seed=self.seed + self.book.episode)

    def step(self, action: np.ndarray) -> StepRecord:
        action = np.clip(action, self.spec.action_low, self.spec.action_high)
        result = self.env.step(action)
        next_state = np.asarray(result.observation, dtype=np.float32)
        seq, episode, step = self.book.record(result.reward, result.success)
        record = StepRecord(seq, episode, step, self.state, action, float(result.reward), next_state,
                            bool(result.terminated), bool(result.truncated), bool(result.success))
        record.episode_end = self.book.advance(record.terminated or record.truncated)
        if record.episode_end is not None:
            self.state = self.env.reset(seed=self.seed + self.book.episode)
        else:
            self.state = next_state
        return record

    def close(self) -> None:
        self.env.close()


def fine_tuning_step(learner, chooser, stepper: EnvStepper, policy, source: int = 0):
    """One step of the loop in one process: the controller's choice for the learner's current
    phase (`chooser` with `policy(obs, deterministic)`), the bridge's env step, the learner's
    store and train. Returns (record, exploratory?, training metrics)."""
    action, exploratory = chooser.choose(learner.phase, stepper.state, policy, stepper.book.episode)
    record = stepper.step(action)
    learner.add_transition(source, record.seq, record.episode, record.state, record.action, record.reward,
                           record.next_state, record.terminated, record.truncated, record.success, step=record.step)
    return record, exploratory, learner.train()
