"""End-to-end: SAC from scratch (PorlAgent with presample_steps=0) solves Pendulum-v1.

Small config so it runs in well under a minute on a 2-core CPU: 2 critics, UTD 1,
128x128 networks, 1000 uniform-random warm-up steps, 8000 env steps in total.
A random policy scores about -1200; a solved pendulum scores about -150.
"""

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

from porl_ros.core import EpsilonGreedy, PorlAgent, PorlConfig, ReplayBuffer  # noqa: E402

STEPS = 8000
WARMUP = 1000
THRESHOLD = -400.0  # mean return over 5 deterministic evaluation episodes


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def evaluate(env, agent, episodes: int = 5) -> float:
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=10_000 + e)
        total, done = 0.0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(agent.act(obs, deterministic=True))
            total += r
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.timeout(240)
def test_sac_from_scratch_solves_pendulum():
    env = gym.make("Pendulum-v1")
    low, high = env.action_space.low, env.action_space.high
    cfg = PorlConfig(n_critics=2, n_target_critics=2, critic_layer_norm=False, critic_hidden=(128, 128),
                     actor_hidden=(128, 128), utd_ratio=1, presample_steps=0, batch_size=128,
                     actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3, learning_starts=WARMUP,
                     device="cpu", seed=0)
    agent = PorlAgent(3, 1, low, high, cfg)
    replay = ReplayBuffer(STEPS, 3, 1)
    explore = EpsilonGreedy(low, high, seed=0)
    before = evaluate(env, agent, episodes=2)
    obs, _ = env.reset(seed=0)
    for step in range(STEPS):
        # Warm-up = epsilon 1 (uniform actions), then the stochastic SAC policy.
        action, _ = explore(agent.act(obs, deterministic=False), 1.0 if step < WARMUP else 0.0)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, reward, next_obs, terminated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        agent.train_after_env_step(replay)
    score = evaluate(env, agent)
    env.close()
    assert agent.critic_updates == STEPS - WARMUP + 1
    assert before < -900, before
    assert score > THRESHOLD, f"mean return {score:.1f} <= {THRESHOLD}"
