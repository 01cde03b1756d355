"""PorlLearner's episode statistics: the Q-calibration gap against Monte-Carlo returns."""

import numpy as np
import torch

from porl_ros.core.config import PorlConfig
from porl_ros.core.learner import build_learner
from porl_ros.core.networks import SquashedGaussianActor


class ConstantCritic(torch.nn.Module):
    """Q(s, a) = value for every member: makes the expected gap computable by hand."""

    def __init__(self, value: float, members: int = 2) -> None:
        super().__init__()
        self.value, self.members = value, members
        self.calls = 0

    def forward(self, obs, action, members=None):
        self.calls += 1
        return torch.full((self.members, obs.shape[0]), self.value)


def _learner(gamma: float = 0.5, reward_scale: float = 1.0):
    actor = SquashedGaussianActor(3, 2, (8,), -np.ones(2), np.ones(2))
    config = PorlConfig(n_critics=2, critic_hidden=(8,), batch_size=4, gamma=gamma, presample_steps=10,
                        device="cpu", reward_scale=reward_scale)
    return build_learner(actor, config, replay_capacity=100)


def test_gap_is_q_minus_discounted_return_with_the_critic_at_episode_end():
    learner = _learner(gamma=0.5)
    critic = ConstantCritic(3.0)
    learner.agent.critic = critic
    rewards = [1.0, 2.0, 4.0]
    for step, reward in enumerate(rewards):
        record = learner.add_transition(0, step, 0, np.zeros(3), np.zeros(2), reward, np.ones(3),
                                        terminated=step == len(rewards) - 1, truncated=False, success=False)
    # Returns to go with gamma 0.5: [1 + 0.5*2 + 0.25*4, 2 + 0.5*4, 4] = [3, 4, 4].
    assert record is not None and record.length == 3 and record.episode_return == 7.0
    assert np.isclose(record.q_calibration_gap, 3.0 - np.mean([3.0, 4.0, 4.0]))
    assert critic.calls == 1, "the episode's Q values should come from one batched forward"


def test_truncated_episode_bootstraps_its_tail_with_the_critic():
    learner = _learner(gamma=0.5)
    learner.agent.critic = ConstantCritic(2.0)
    record = None
    for step in range(2):
        record = learner.add_transition(0, step, 0, np.zeros(3), np.zeros(2), 1.0, np.ones(3),
                                        terminated=False, truncated=step == 1, success=step == 1)
    # Tail Q = 2: returns to go = [1 + 0.5*(1 + 0.5*2), 1 + 0.5*2] = [2, 2].
    assert record.success and np.isclose(record.q_calibration_gap, 0.0)


def test_open_episode_survives_a_bookkeeping_round_trip():
    learner = _learner()
    learner.add_transition(0, 0, 0, np.arange(3), np.full(2, 0.5), 1.0, np.ones(3), False, False, False)
    state = learner.bookkeeping_state()
    restored = _learner()
    restored.load_bookkeeping_state(state)
    restored.agent.critic = ConstantCritic(1.0)
    record = restored.add_transition(0, 1, 0, np.ones(3), np.zeros(2), 1.0, np.ones(3), True, False, True)
    assert record.length == 2 and record.episode_return == 2.0


def test_presample_utd_ratio_and_an_early_switch():
    actor = SquashedGaussianActor(3, 2, (8,), -np.ones(2), np.ones(2))
    config = PorlConfig(n_critics=2, critic_hidden=(8,), batch_size=4, learning_starts=4, utd_ratio=2,
                        presample_utd_ratio=5, presample_steps=100, device="cpu")
    learner = build_learner(actor, config, replay_capacity=100)
    frozen = {k: v.clone() for k, v in learner.agent.actor.state_dict().items()}
    rng = np.random.default_rng(0)
    for step in range(6):
        learner.add_transition(0, step, 0, rng.normal(size=3), rng.uniform(-1, 1, 2), 1.0, rng.normal(size=3),
                               False, False, False)
        learner.train()
    # Pre-sample (actor frozen): 5 updates per step once 4 transitions are stored (steps 4..6).
    assert learner.agent.critic_updates == 5 * 3 and learner.agent.actor_updates == 0
    assert all(torch.equal(v, frozen[k]) for k, v in learner.agent.actor.state_dict().items())
    assert learner.end_presample() and learner.phase == "finetune" and learner.schedule.presample_steps == 6
    assert not learner.end_presample()
    learner.add_transition(0, 6, 0, rng.normal(size=3), rng.uniform(-1, 1, 2), 1.0, rng.normal(size=3),
                           False, False, False)
    learner.train()
    assert learner.agent.critic_updates == 15 + 2 and learner.agent.actor_updates == 2


def test_rewards_are_scaled_where_they_are_stored():
    """reward_scale applies to what the critic learns from (replay, Q calibration), not to the
    episode's own return, and the transition log keeps the rewards as received."""
    learner = _learner(gamma=0.5, reward_scale=0.1)
    learner.agent.critic = ConstantCritic(0.3)
    for step, reward in enumerate([1.0, 2.0, 4.0]):
        record = learner.add_transition(0, step, 0, np.zeros(3), np.zeros(2), reward, np.ones(3),
                                        terminated=step == 2, truncated=False, success=False)
    np.testing.assert_allclose(learner.replay.column("reward")[:3], [0.1, 0.2, 0.4], rtol=1e-6)
    assert record.episode_return == 7.0
    # Scaled returns to go with gamma 0.5: [0.3, 0.4, 0.4].
    assert np.isclose(record.q_calibration_gap, 0.3 - np.mean([0.3, 0.4, 0.4]))


def test_updates_owed_is_what_lockstep_training_does_per_step():
    """The free-running budget and lockstep's per-step training are one rule, across the switch."""
    actor = SquashedGaussianActor(3, 2, (8,), -np.ones(2), np.ones(2))
    config = PorlConfig(n_critics=2, critic_hidden=(8,), batch_size=4, learning_starts=3, utd_ratio=2,
                        presample_utd_ratio=3, presample_steps=6, device="cpu")
    learner = build_learner(actor, config, replay_capacity=100)
    rng = np.random.default_rng(0)
    for step in range(10):
        learner.add_transition(0, step, 0, rng.normal(size=3), rng.uniform(-1, 1, 2), 1.0, rng.normal(size=3),
                               False, False, False)
        learner.train()
        assert learner.agent.critic_updates == learner.updates_owed(), step
        assert not learner.update_due() and learner.train_one_update() == {}
    # steps 3..5 in pre-sample (3 each), 6..10 in fine-tune (2 each)
    assert learner.updates_owed() == 3 * 3 + 2 * 5 and learner.switch_step == 6
    learner.add_transition(0, 10, 0, rng.normal(size=3), rng.uniform(-1, 1, 2), 1.0, rng.normal(size=3),
                           False, False, False)
    assert learner.update_due() and learner.train_one_update() and learner.train_one_update()
    assert not learner.update_due()


def test_starting_actor_resets_a_pretrained_log_std_and_seeds_a_fresh_one():
    import types

    import torch

    from porl_ros.core.learner import starting_actor

    obs = torch.zeros(5, 3)
    pretrained = SquashedGaussianActor(3, 2, (8,), -np.ones(2), np.ones(2))
    mean_before = pretrained.mean_action(obs).clone()
    config = PorlConfig(actor_hidden=(16,), device="cpu", seed=4)
    actor = starting_actor(config, pretrained)
    assert actor is pretrained and torch.equal(actor.mean_action(obs), mean_before)
    torch.testing.assert_close(actor.distribution_params(obs)[1], torch.full((5, 2), -1.0))
    untouched = starting_actor(PorlConfig(actor_log_std_init=None), SquashedGaussianActor(
        3, 2, (8,), -np.ones(2), np.ones(2)))
    assert not torch.allclose(untouched.distribution_params(obs)[1], torch.full((5, 2), -1.0))
    spec = types.SimpleNamespace(obs_dim=3, act_dim=2, action_low=-np.ones(2), action_high=np.ones(2))
    fresh = starting_actor(config, spec=spec)
    again = starting_actor(config, spec=spec)
    assert fresh.hidden == (16,) and torch.equal(fresh.mean_action(obs), again.mean_action(obs))


def test_an_early_switch_survives_a_bookkeeping_round_trip():
    learner = _learner()
    for step in range(3):
        learner.add_transition(0, step, 0, np.zeros(3), np.zeros(2), 1.0, np.ones(3), False, False, False)
    assert learner.switch_step is None and learner.end_presample() and learner.switch_step == 3
    restored = _learner()
    restored.agent.set_phase(learner.agent.phase)  # resume_learner restores the agent's tensors first
    restored.load_bookkeeping_state(learner.bookkeeping_state())
    assert restored.switch_step == 3 and restored.updates_owed() == learner.updates_owed()


def _add(learner, seq, episode, step, source=0):
    return learner.add_transition(source, seq, episode, np.full(3, 0.1), np.zeros(2), 0.0, np.full(3, 0.1), False,
                                  False, False, step=step)


def test_a_forged_forward_seq_jump_never_starves_the_real_stream():
    """Issue 17: one Transition with seq + 5000 (and a far episode) made the learner reject the next
    4999 genuine ones as duplicates. Now the jump is undone as soon as the stream goes on where it was."""
    learner = _learner()
    for seq in range(10):
        _add(learner, seq, 0, seq)
    _add(learner, 5010, 900, 0)  # forged
    assert learner.next_seq[0] == 5011 and learner.seq_gaps == 5000
    for seq in range(10, 40):  # the genuine bridge goes on: every transition is stored
        _add(learner, seq, 0, seq)
    assert learner.env_steps == 41 and learner.next_seq[0] == 40
    assert learner.seq_gaps == 0 and learner.seq_jumps_undone == 1
    assert sum(learner.rejected.values()) == 0
    # A real gap (lost messages) is still a gap, and stays one while nothing comes back for it.
    _add(learner, 43, 0, 43)
    _add(learner, 44, 0, 44)
    assert learner.seq_gaps == 3 and learner.next_seq[0] == 45
    # Jumps on top of jumps are undone together; the state survives a bookkeeping round trip.
    _add(learner, 9000, 5000, 0)
    _add(learner, 9500, 5000, 1)
    restored = _learner()
    restored.load_bookkeeping_state(learner.bookkeeping_state())
    for seq in range(45, 50):
        _add(restored, seq, 0, seq)
    assert restored.next_seq[0] == 50 and restored.seq_gaps == 3 and restored.seq_jumps_undone == 3
