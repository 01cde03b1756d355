"""The environment side of a fine-tuning step (EnvStepper, EpisodeBook) and the step itself."""

import numpy as np
import pytest

from porl_ros.core.config import PorlConfig
from porl_ros.core.exploration import ActionChooser, ExplorationConfig
from porl_ros.core.learner import build_learner
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.core.rollout import EnvStepper, EpisodeBook, fine_tuning_step
from porl_ros.envs.base import EnvSpec, StepResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingEnv:
    """Episodes of 3 steps; the observation is (reset seed, step); reward = step."""

    def __init__(self) -> None:
        self.spec = EnvSpec("test/count", 2, 1, np.array([-1.0]), np.array([1.0]), 3)
        self.resets, self.actions = [], []

    def reset(self, seed=None):
        self.resets.append(seed)
        self.t = 0
        return np.array([seed, 0], dtype=np.float32)

    def step(self, action):
        self.actions.append(np.asarray(action).copy())
        self.t += 1
        return StepResult(np.array([self.resets[-1], self.t], dtype=np.float32), float(self.t), False, self.t == 3,
                          self.t == 2)

    def close(self):
        pass


def test_stepper_numbers_steps_clamps_actions_and_seeds_each_episode():
    env = CountingEnv()
    stepper = EnvStepper(env, seed=7)
    records = [stepper.step(np.array([5.0])) for _ in range(7)]
    assert env.resets == [7, 8, 9]  # episode k starts from seed + k
    assert [(r.seq, r.episode, r.step) for r in records] == [(0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 1, 0), (4, 1, 1),
                                                             (5, 1, 2), (6, 2, 0)]
    assert all(a[0] == 1.0 for a in env.actions) and all(r.action[0] == 1.0 for r in records)
    np.testing.assert_array_equal(records[3].state, [8, 0])
    np.testing.assert_array_equal(records[1].next_state, records[2].state)
    ends = [r.episode_end for r in records if r.episode_end is not None]
    assert [(e.episode, e.episode_return, e.success) for e in ends] == [(0, 6.0, True), (1, 6.0, True)]
    assert (stepper.book.episodes, stepper.book.successes, stepper.book.seq) == (2, 2, 7)
    np.testing.assert_array_equal(stepper.state, [9, 1])


def test_book_ends_an_episode_without_a_last_transition():
    book = EpisodeBook()
    assert book.record(1.0, False) == (0, 0, 0) and book.advance(False) is None
    summary = book.end_episode()  # e.g. an emergency stop while waiting for the next action
    assert (summary.episode, summary.episode_return, summary.success) == (0, 1.0, False)
    assert book.record(2.0, True) == (1, 1, 0)


def test_fine_tuning_step_is_choose_step_store_train():
    env = CountingEnv()
    actor = SquashedGaussianActor(2, 1, (8,), np.array([-1.0]), np.array([1.0]))
    config = PorlConfig(n_critics=2, critic_hidden=(8,), batch_size=2, utd_ratio=1, presample_steps=2,
                        device="cpu", reward_scale=1.0)
    learner = build_learner(actor, config, replay_capacity=10)
    chooser = ActionChooser(ExplorationConfig(presample_epsilon=0.0), env.spec.action_low, env.spec.action_high, 0)
    stepper = EnvStepper(env, seed=0)
    asked = []

    def policy(obs, deterministic):
        asked.append(deterministic)
        return np.array([0.25], dtype=np.float32)

    for _ in range(4):
        record, explored, metrics = fine_tuning_step(learner, chooser, stepper, policy)
        assert not explored and record.action[0] == np.float32(0.25)
    assert asked == [True, True, False, False]  # the learner's phase chose mean, then sample
    assert learner.env_steps == 4 and learner.agent.critic_updates == 3  # from the 2nd step (one batch)
    np.testing.assert_array_equal(learner.replay.column("reward")[:4], [1, 2, 3, 1])
    assert [e.episode_return for e in learner.episodes] == [6.0]
