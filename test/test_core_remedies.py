"""The fine-tuning remedies of PorlConfig, each checked on its mechanism: the absorbing value of a
success that ends the episode, the Monte-Carlo lower bound on the TD target, the trust region
toward the frozen pre-trained actor (with its Q-filter) and the normalised Q term of the actor
loss."""

import numpy as np
import pytest
import torch

from porl_ros.core import PorlAgent, PorlConfig, ReplayBuffer
from porl_ros.core.learner import build_learner
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.core.replay import Batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(**kw) -> PorlConfig:
    base = dict(n_critics=2, critic_hidden=(16,), actor_hidden=(16,), batch_size=8, presample_steps=0,
                device="cpu", seed=0, actor_log_std_init=None)
    return PorlConfig(**(base | kw))


def constant_critic(agent: PorlAgent, value: float) -> None:
    """Every critic (and target) outputs `value` whatever the input."""
    with torch.no_grad():
        for critic in (agent.critic, agent.critic_target):
            critic.head.weight.zero_()
            critic.head.bias.fill_(value)


def batch(mc_return) -> Batch:
    n = len(mc_return)
    return Batch(obs=torch.zeros(n, 2), action=torch.zeros(n, 1), reward=torch.zeros(n), next_obs=torch.zeros(n, 2),
                 terminated=torch.zeros(n), mc_return=torch.tensor(mc_return, dtype=torch.float32))


@pytest.mark.parametrize("on", [True, False])
def test_mc_lower_bound_floors_the_td_target_where_the_return_is_known(on):
    agent = PorlAgent(2, 1, [-1.0], [1.0], config(mc_lower_bound=on, gamma=0.5, init_alpha=1e-9))
    constant_critic(agent, 2.0)  # TD target = 0 + 0.5 * 2 = 1
    y, _ = agent.compute_target(batch([5.0, 0.5, float("-inf")]))
    expected = [5.0, 1.0, 1.0] if on else [1.0, 1.0, 1.0]  # -inf: the episode has not ended yet
    torch.testing.assert_close(y, torch.tensor(expected), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mix", [0.0, 0.25])
def test_mc_target_mix_blends_the_observed_return_into_the_target_where_known(mix):
    agent = PorlAgent(2, 1, [-1.0], [1.0], config(mc_lower_bound=False, mc_target_mix=mix, gamma=0.5,
                                                  init_alpha=1e-9))
    constant_critic(agent, 2.0)  # TD target = 0 + 0.5 * 2 = 1
    y, _ = agent.compute_target(batch([5.0, 0.0, float("-inf")]))
    expected = [1 + mix * (5 - 1), 1 + mix * (0 - 1), 1.0]  # -inf: not known yet, the TD target alone
    torch.testing.assert_close(y, torch.tensor(expected), rtol=0, atol=1e-5)


def test_learner_stores_the_observed_discounted_return_when_an_episode_ends():
    actor = SquashedGaussianActor(2, 1, (8,), [-1.0], [1.0])
    learner = build_learner(actor, config(gamma=0.5, reward_scale=2.0, presample_steps=10), replay_capacity=10)
    for step, reward in enumerate([1.0, 2.0, 4.0]):
        learner.add_transition(0, step, 0, np.zeros(2), np.zeros(1), reward, np.zeros(2), False, step == 2, False,
                               step=step)
        if step < 2:
            assert np.all(learner.replay.column("mc_return") == -np.inf)  # not known until the end
    # Scaled rewards 2, 4, 8 with gamma 0.5, truncated: the tail beyond the episode counts as 0.
    np.testing.assert_allclose(learner.replay.column("mc_return"), [2 + 0.5 * 4 + 0.25 * 8, 4 + 0.5 * 8, 8])


@pytest.mark.parametrize("absorbing", [True, False])
@pytest.mark.parametrize("success", [True, False])
def test_a_success_that_ends_the_episode_is_worth_its_reward_for_ever(absorbing, success):
    actor = SquashedGaussianActor(2, 1, (8,), [-1.0], [1.0])
    learner = build_learner(actor, config(gamma=0.5, reward_scale=2.0, presample_steps=10,
                                          absorbing_success=absorbing), replay_capacity=10)
    for step, reward in enumerate([1.0, 3.0]):  # the second step ends the episode
        learner.add_transition(0, step, 0, np.zeros(2), np.zeros(1), reward, np.zeros(2), step == 1, False,
                               success and step == 1, step=step)
    # Scaled rewards 2, 6; a success valued as staying solved: 6 / (1 - 0.5) = 12 (TD target and
    # observed return alike); a failure that ends the episode (a fall) is worth its reward only.
    last = 12.0 if absorbing and success else 6.0
    np.testing.assert_allclose(learner.replay.column("reward"), [2.0, last])
    np.testing.assert_allclose(learner.replay.column("mc_return"), [2 + 0.5 * last, last])
    assert learner.episodes[-1].episode_return == 4.0  # the environment's own return is unchanged


def agent_whose_critic_prefers_plus_one(**remedies) -> PorlAgent:
    """A pre-trained actor and a critic Q(s, a) = 160 (a + 1), rising in a everywhere."""
    torch.manual_seed(0)
    actor = SquashedGaussianActor(2, 1, (16,), [-1.0], [1.0])
    agent = PorlAgent(2, 1, [-1.0], [1.0], config(actor_lr=3e-3, critic_layer_norm=False, **remedies), actor=actor)
    with torch.no_grad():  # one hidden layer without LayerNorm
        for critic in (agent.critic, agent.critic_target):
            (linear,) = critic.linears
            linear.weight.zero_()
            linear.bias.fill_(1.0)
            linear.weight[:, 2, :] = 1.0  # inputs are [s0, s1, a]
            critic.head.weight.fill_(10.0)
            critic.head.bias.zero_()
    return agent


def trained_actor_distance(**remedies) -> tuple[float, PorlAgent]:
    """Train the actor for 200 updates against a critic that prefers action +1 everywhere;
    returns the mean |change| of its mean action from the starting (pre-trained) one."""
    agent = agent_whose_critic_prefers_plus_one(**remedies)
    obs = torch.randn(64, 2)
    start = agent.actor.mean_action(obs).detach()
    for _ in range(200):
        agent._update_actor_and_alpha(obs)
    return float((agent.actor.mean_action(obs).detach() - start).abs().mean()), agent


def test_trust_region_holds_the_actor_near_the_pretrained_policy():
    free, _ = trained_actor_distance()
    held, agent = trained_actor_distance(trust_region_weight=100.0, actor_q_normalise=True)
    assert free > 0.3 and held < 0.1 * free
    assert agent.reference is not None and not any(p.requires_grad for p in agent.reference.parameters())


def test_q_filter_lets_the_actor_leave_where_the_critic_prefers_its_action():
    # The critic prefers +1: wherever the actor moved up, the pre-trained action rates lower,
    # so the filtered trust region does not pull it back.
    filtered, _ = trained_actor_distance(trust_region_weight=100.0,
                                         actor_q_normalise=True, trust_region_q_filter=True)
    held, _ = trained_actor_distance(trust_region_weight=100.0, actor_q_normalise=True)
    assert filtered > 3 * held


def test_normalised_q_term_does_not_depend_on_the_reward_scale():
    def update_with_scale(scale: float) -> torch.Tensor:
        torch.manual_seed(0)
        actor = SquashedGaussianActor(2, 1, (16,), [-1.0], [1.0])
        agent = PorlAgent(2, 1, [-1.0], [1.0], config(actor_q_normalise=True, init_alpha=1e-9,
                                                      trust_region_weight=1.0), actor=actor)
        torch.manual_seed(1)
        with torch.no_grad():
            agent.critic.head.weight.normal_()
            agent.critic.head.weight.mul_(scale)
            agent.critic.head.bias.fill_(scale)
        agent._update_actor_and_alpha(torch.randn(32, 2))
        return agent.actor.mu.weight.detach().clone()

    torch.testing.assert_close(update_with_scale(1.0), update_with_scale(1000.0), rtol=1e-4, atol=1e-6)


def test_critic_sees_observations_normalised_with_the_pretrained_actors_statistics():
    mean, std = np.array([0.5, -2.0]), np.array([0.01, 4.0])
    actor = SquashedGaussianActor(2, 1, (8,), [-1.0], [1.0], obs_mean=mean, obs_std=std)
    normalised = PorlAgent(2, 1, [-1.0], [1.0], config(critic_obs_normalise=True), actor=actor)
    raw = PorlAgent(2, 1, [-1.0], [1.0], config(), actor=SquashedGaussianActor(2, 1, (8,), [-1.0], [1.0]))
    raw.critic.load_state_dict(normalised.critic.state_dict())
    raw.critic.obs_mean.zero_()
    raw.critic.obs_std.fill_(1.0)
    obs = torch.tensor([[0.52, 2.0], [0.0, -2.0]])  # z = (2, 1) and (-50 -> clipped to -10, 0)
    action = torch.zeros(2, 1)
    expected = raw.critic(torch.tensor([[2.0, 1.0], [-10.0, 0.0]]), action)
    torch.testing.assert_close(normalised.critic(obs, action), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(normalised.critic_target(obs, action), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(raw.critic(obs, action), expected)  # off: raw observations


def test_the_acting_policy_is_a_moving_average_of_the_trained_actor():
    rate = 0.1
    _, plain = trained_actor_distance()
    assert plain.averaged_actor is None and plain.policy is plain.actor
    torch.manual_seed(0)
    actor = SquashedGaussianActor(2, 1, (16,), [-1.0], [1.0])
    agent = PorlAgent(2, 1, [-1.0], [1.0], config(actor_lr=3e-3, policy_average=rate), actor=actor)
    expected = [p.detach().clone() for p in agent.actor.parameters()]
    obs = torch.randn(32, 2)
    for _ in range(20):
        agent._update_actor_and_alpha(obs)
        expected = [(1 - rate) * e + rate * p.detach() for e, p in zip(expected, agent.actor.parameters())]
    assert agent.policy is agent.averaged_actor
    for e, averaged, trained in zip(expected, agent.averaged_actor.parameters(), agent.actor.parameters()):
        torch.testing.assert_close(averaged, e, rtol=1e-5, atol=1e-6)
        assert not torch.equal(averaged, trained)  # it lags the trained actor
    # What acts is the average; a resumed agent gets it back; a restore resets it to the best policy.
    state = agent.state_tensors()
    assert any(k.startswith("averaged_actor.") for k in state)
    np.testing.assert_array_equal(agent.act(np.zeros(2, dtype=np.float32), deterministic=True),
                                  agent.averaged_actor.act(np.zeros(2, dtype=np.float32), deterministic=True))
    agent.remember_best_actor()
    best = [p.detach().clone() for p in agent.averaged_actor.parameters()]
    for _ in range(5):
        agent._update_actor_and_alpha(obs)
    agent.restore_best_actor(0.5)
    for b, averaged, trained in zip(best, agent.averaged_actor.parameters(), agent.actor.parameters()):
        assert torch.equal(averaged, b) and torch.equal(trained, b)


@pytest.mark.parametrize("pessimism", [0.0, 1.0])
def test_a_pessimistic_actor_does_not_chase_values_the_critics_disagree_on(pessimism):
    # Member 0: Q = 160 (a + 1); member 1: Q = 0. The mean rises in a, mean - 1 std falls.
    agent = agent_whose_critic_prefers_plus_one(actor_q_pessimism=pessimism, n_critics=2, n_target_critics=1)
    with torch.no_grad():
        agent.critic.head.weight[1].zero_()
    obs = torch.randn(64, 2)
    start = agent.actor.mean_action(obs).detach()
    for _ in range(100):
        agent._update_actor_and_alpha(obs)
    moved = float((agent.actor.mean_action(obs).detach() - start).mean())
    assert (moved > 0.2) if pessimism == 0 else (moved < -0.2)


def test_pessimism_needs_an_ensemble():
    with pytest.raises(ValueError, match="actor_q_pessimism"):
        config(actor_q_pessimism=1.0, n_critics=1, n_target_critics=1)


def _episode(replay: ReplayBuffer, start: float, rewards, terminated_last: bool, source: int = 0) -> None:
    """One episode of 1-d states start, start+1, ... with the given rewards."""
    for i, r in enumerate(rewards):
        done = terminated_last and i == len(rewards) - 1
        replay.add([start + i], [0.0], r, [start + i + 1], done, source)


def test_n_step_batches_follow_each_row_through_its_own_episode_only(tmp_path):
    replay = ReplayBuffer(64, 1, 1)
    _episode(replay, 0.0, [1.0, 2.0, 4.0], terminated_last=True)  # rows 0-2, ends by termination
    _episode(replay, 100.0, [1.0, 1.0, 1.0, 1.0, 1.0], terminated_last=False)  # rows 3-7, time limit
    # Rows 8-10 interleave two bridges: row 8 continues in row 10 (its own bridge's next row).
    replay.add([200.0], [0.0], 1.0, [201.0], False, 1)
    replay.add([300.0], [0.0], 1.0, [301.0], False, 2)
    replay.add([201.0], [0.0], 8.0, [202.0], False, 1)
    replay.add([500.0], [0.0], 1.0, [501.0], False, 1)  # row 11: a new episode of bridge 1
    gamma = 0.5

    class Fixed:  # "draws" the rows to check, in order
        def integers(self, low, high, size):
            return np.array([0, 1, 2, 3, 6, 7, 8, 9, 10])

    b = replay.sample(9, generator=Fixed(), n_step=3, gamma=gamma)
    expected_reward = [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4, 1 + 0.5 + 0.25, 1 + 0.5, 1, 1 + 0.5 * 8, 1, 8]
    expected_next = [3.0, 3.0, 3.0, 103.0, 105.0, 105.0, 202.0, 301.0, 202.0]
    expected_discount = [0.125, 0.25, 0.5, 0.125, 0.25, 0.5, 0.25, 0.5, 0.5]
    torch.testing.assert_close(b.reward, torch.tensor(expected_reward))
    torch.testing.assert_close(b.next_obs[:, 0], torch.tensor(expected_next))
    torch.testing.assert_close(b.discount, torch.tensor(expected_discount))
    torch.testing.assert_close(b.terminated, torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 0, 0]))
    torch.testing.assert_close(b.obs[:, 0], torch.tensor([0.0, 1, 2, 100, 103, 104, 200, 300, 201]))
    torch.testing.assert_close(b.action, torch.zeros(9, 1))
    # The links are rebuilt from the rows when the buffer is loaded from its file.
    replay.save(tmp_path / "replay.safetensors")
    again = ReplayBuffer.load(tmp_path / "replay.safetensors").sample(9, generator=Fixed(), n_step=3, gamma=gamma)
    for name in ("reward", "next_obs", "discount", "terminated"):
        torch.testing.assert_close(getattr(again, name), getattr(b, name))


def test_n_step_chain_stops_where_the_ring_overwrote_its_continuation():
    replay = ReplayBuffer(4, 1, 1)
    _episode(replay, 0.0, [1.0] * 6, terminated_last=False)  # slots hold steps 4, 5, 2, 3 (cursor 2)

    class Fixed:
        def integers(self, low, high, size):
            return np.array([2, 1])  # step 2 (chains 2 -> 3 -> 4 across the wrap) and step 5 (newest)

    b = replay.sample(2, generator=Fixed(), n_step=3, gamma=0.5)
    torch.testing.assert_close(b.next_obs[:, 0], torch.tensor([5.0, 6.0]))
    torch.testing.assert_close(b.discount, torch.tensor([0.125, 0.5]))
    replay.add([50.0], [0.0], 1.0, [51.0], False)  # overwrites step 2: step 3 -> 4 -> 5 still chain
    b = replay.sample(2, generator=Fixed(), n_step=3, gamma=0.5)  # slot 2 is now the new row
    torch.testing.assert_close(b.discount, torch.tensor([0.5, 0.5]))


def test_n_step_target_uses_the_batch_discount_and_one_step_is_unchanged():
    agent = PorlAgent(2, 1, [-1.0], [1.0], config(mc_lower_bound=False, gamma=0.5, init_alpha=1e-9))
    constant_critic(agent, 2.0)
    b = batch([float("-inf")] * 2)._replace(reward=torch.tensor([1.0, 1.0]), discount=torch.tensor([0.125, 0.5]))
    y, _ = agent.compute_target(b)
    torch.testing.assert_close(y, torch.tensor([1 + 0.125 * 2, 1 + 0.5 * 2]), rtol=0, atol=1e-5)
    y1, _ = agent.compute_target(b._replace(discount=None))
    torch.testing.assert_close(y1, torch.tensor([2.0, 2.0]), rtol=0, atol=1e-5)


def test_n_step_refuses_the_fused_block():
    from porl_ros.core.settings import SettingError
    with pytest.raises(SettingError, match="n_step"):
        config(n_step=3, fused_update="eager").check()
    assert PorlAgent(2, 1, [-1.0], [1.0], config(n_step=3)).update_mode == "off"
