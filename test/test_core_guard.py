"""Regression guard: baseline from pre-sample, windows judged against it, the best actor restored."""

import numpy as np
import pytest
import torch

from porl_ros.core.config import PorlConfig
from porl_ros.core.exploration import ActionChooser, ExplorationConfig
from porl_ros.core.guard import RegressionGuard
from porl_ros.core.learner import build_learner
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.core.phases import FINETUNE, PRESAMPLE
from porl_ros.core.rollout import EnvStepper, fine_tuning_step
from porl_ros.envs.base import EnvSpec, StepResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_window_far_below_the_presample_baseline_asks_for_a_restore():
    guard = RegressionGuard(window=4, success_margin=0.2, return_margin=0.25)
    for success in (True, True, True, False):
        assert not guard.observe(PRESAMPLE, success, 100.0).restore
    assert guard.baseline.success_rate == 0.75 and guard.baseline.mean_return == 100.0
    verdicts = [guard.observe(FINETUNE, s, 100.0) for s in (True, False, False, True)]
    assert [v.restore for v in verdicts] == [False, False, False, True]  # judged once the window is full
    assert "success 0.50" in verdicts[-1].reason and "0.75" in verdicts[-1].reason
    assert guard.restores == 1


def test_return_margin_alone_triggers_and_windows_do_not_overlap():
    guard = RegressionGuard(window=2, success_margin=1.0, return_margin=0.25)
    guard.observe(PRESAMPLE, False, 200.0)
    assert not guard.observe(FINETUNE, False, 160.0).restore
    verdict = guard.observe(FINETUNE, False, 130.0)  # mean 145 < 200 - 0.25 * 200
    assert verdict.restore and "mean return 145.0" in verdict.reason
    assert not guard.observe(FINETUNE, False, 0.0).restore  # a new window starts empty


def test_a_better_window_becomes_the_best_and_equal_ones_do_not():
    guard = RegressionGuard(window=2, success_margin=0.5, return_margin=1.0)
    guard.observe(PRESAMPLE, True, 10.0)
    guard.observe(PRESAMPLE, False, 10.0)
    guard.observe(FINETUNE, True, 10.0)
    assert not guard.observe(FINETUNE, False, 10.0).new_best  # equal to the baseline
    guard.observe(FINETUNE, True, 10.0)
    assert guard.observe(FINETUNE, True, 9.0).new_best  # 1.0 success beats 0.5
    guard.observe(FINETUNE, True, 8.0)
    assert not guard.observe(FINETUNE, True, 8.0).new_best  # same success, lower return


def test_no_baseline_no_verdict_and_state_round_trip():
    guard = RegressionGuard(window=1, success_margin=0.0, return_margin=0.0)
    assert guard.observe(FINETUNE, False, -1e9) == type(guard.observe(FINETUNE, False, 0.0))()  # T = 0
    guard.observe(PRESAMPLE, True, 5.0)
    guard.observe(FINETUNE, False, 1.0)
    copy = RegressionGuard(window=1, success_margin=0.0, return_margin=0.0)
    copy.load_state(guard.state())
    assert copy.state() == guard.state() and copy.restores == 1
    with pytest.raises(ValueError, match="phase"):
        guard.observe("done", True, 0.0)


class TargetEnv:
    """One-dimensional: an episode of 5 steps succeeds when every action is within 0.1 of 0.5."""

    def __init__(self) -> None:
        self.spec = EnvSpec("test/target", 1, 1, np.array([-1.0]), np.array([1.0]), 5)

    def reset(self, seed=None):
        self.t, self.good = 0, True
        return np.array([0.0], dtype=np.float32)

    def step(self, action):
        self.t += 1
        error = abs(float(action[0]) - 0.5)
        self.good &= error < 0.1
        return StepResult(np.array([self.t / 5], dtype=np.float32), 1.0 - error, False, self.t == 5,
                          self.good and self.t == 5)

    def close(self):
        pass


def pretrained_actor() -> SquashedGaussianActor:
    """Mean action 0.5 everywhere (zero trunk weights, bias atanh(0.5))."""
    torch.manual_seed(0)
    actor = SquashedGaussianActor(1, 1, (8,), np.array([-1.0]), np.array([1.0]))
    with torch.no_grad():
        for module in (actor.trunk[0], actor.mu):
            module.weight.zero_()
        actor.mu.bias.fill_(float(np.arctanh(0.5)))
    return actor


def test_a_diverging_learner_gets_the_pretrained_actor_back_with_a_lower_lr():
    env = TargetEnv()
    config = PorlConfig(n_critics=2, critic_hidden=(8,), batch_size=4, utd_ratio=1, presample_steps=20,
                        actor_lr=1.0, device="cpu", reward_scale=1.0, guard_window=3, guard_success_margin=0.3,
                        guard_lr_backoff=0.5, actor_log_std_init=None)
    learner = build_learner(pretrained_actor(), config, replay_capacity=500)
    start = {k: v.clone() for k, v in learner.agent.actor.state_dict().items()}
    chooser = ActionChooser(ExplorationConfig(presample_epsilon=0.0), env.spec.action_low, env.spec.action_high, 0)
    stepper = EnvStepper(env, seed=0)

    def policy(obs, deterministic):
        return learner.agent.actor.act(obs, deterministic=True)  # the graph would serve the published actor

    restored = []  # the actor right after each restore (training goes on at once after it)
    restore = learner.agent.restore_best_actor

    def recording_restore(lr_factor):
        restore(lr_factor)
        restored.append({k: v.clone() for k, v in learner.agent.actor.state_dict().items()})

    learner.agent.restore_best_actor = recording_restore
    for _ in range(200):
        fine_tuning_step(learner, chooser, stepper, policy)
    assert learner.guard.baseline.success_rate == 1.0  # the frozen policy always succeeds
    assert learner.guard.best is None  # no window did better than the perfect pre-trained policy
    assert restored, "an actor trained at lr 1.0 on a random critic must fall behind"
    for k, v in start.items():
        torch.testing.assert_close(restored[0][k], v, rtol=0, atol=0)  # the pre-trained actor, bit for bit
    assert learner.agent.actor_lr <= 0.5 and learner.summary()["guard_restores"] >= 1
    assert learner.guard_events and "restored the best actor" in learner.guard_events[0]
    assert learner.actor_changed()  # new weights are due: the restored actor gets published


def test_guard_state_survives_a_checkpoint_round_trip():
    config = PorlConfig(n_critics=2, critic_hidden=(8,), batch_size=4, presample_steps=1, device="cpu",
                        actor_log_std_init=None)
    a = build_learner(pretrained_actor(), config, replay_capacity=10)
    a.guard.observe(PRESAMPLE, True, 3.0)
    with torch.no_grad():
        a.agent.actor.mu.bias.add_(1.0)
    a.agent.remember_best_actor()
    a.agent.restore_best_actor(0.5)
    b = build_learner(pretrained_actor(), config, replay_capacity=10)
    b.load_bookkeeping_state(a.bookkeeping_state())
    b.agent.load_state_tensors(a.agent.state_tensors())
    assert b.guard.state() == a.guard.state() and b.agent.actor_lr == a.agent.actor_lr == 0.5 * config.actor_lr
    torch.testing.assert_close(b.agent.best_actor.mu.bias, a.agent.actor.mu.bias)
