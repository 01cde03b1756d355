"""Behaviour cloning: a known linear policy is recovered, and the result is a normal checkpoint."""

import numpy as np
import pytest
import torch

from porl_ros.core import PorlAgent, PorlConfig
from porl_ros.core.bc import BCConfig, train_bc
from porl_ros.core.checkpoint import actor_from_bytes, actor_to_bytes


# Tiny networks on a shared 2-core machine: one torch thread (conftest restores it).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def linear_demos(n: int, seed: int):
    """obs with non-zero mean and uneven scales (so normalisation matters); a = W obs + b."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(loc=[5.0, -3.0, 0.0, 10.0], scale=[1.0, 0.1, 3.0, 2.0], size=(n, 4))
    z = (obs - [5.0, -3.0, 0.0, 10.0]) / [1.0, 0.1, 3.0, 2.0]
    w = np.array([[0.3, -0.2, 0.1, 0.0], [0.0, 0.25, -0.15, 0.2]])
    act = np.clip(z @ w.T + np.array([0.5, -1.0]), [-1.0, -3.0], [2.0, 1.0])
    return obs.astype(np.float32), act.astype(np.float32)


def test_bc_recovers_linear_policy():
    obs, act = linear_demos(4000, 0)
    calls = []
    actor, stats = train_bc(obs, act, [-1.0, -3.0], [2.0, 1.0],
                            BCConfig(steps=1500, batch_size=256, hidden=(64, 64), lr=1e-3),
                            progress=lambda s, t, l: calls.append((s, t, l)))
    test_obs, test_act = linear_demos(1000, 1)
    pred = actor.act(test_obs, deterministic=True)
    err = np.abs(pred - test_act)
    # Tolerance: mean abs error < 0.03 and 99th percentile < 0.1 (action ranges are 3 and 4
    # wide; the rare worst cases sit at the clipping kinks and the tails of the Gaussian inputs).
    assert err.mean() < 0.03, err.mean()
    assert np.quantile(err, 0.99) < 0.1, np.quantile(err, 0.99)
    np.testing.assert_allclose(actor.obs_mean.numpy(), obs.mean(0), rtol=1e-5)
    assert calls and calls[-1][:2] == (1500, 1500) and np.isfinite(calls[-1][2])
    assert stats["dataset_mse"] < 1e-2 and np.isfinite(stats["loss"])

    # Same checkpoint format and actor class as RL: the BC policy goes straight into PORL.
    loaded, meta = actor_from_bytes(actor_to_bytes(actor))
    assert meta.obs_normalisation
    np.testing.assert_array_equal(loaded.act(test_obs), pred)
    agent = PorlAgent(4, 2, [-1.0, -3.0], [2.0, 1.0], PorlConfig(device="cpu", actor_hidden=(64, 64),
                                                                 n_critics=2, critic_hidden=(16,)), actor=loaded)
    np.testing.assert_array_equal(agent.act(test_obs, deterministic=True), pred)


def test_bc_handles_actions_on_the_bounds_and_validates_input():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(256, 2)).astype(np.float32)
    act = np.where(obs[:, :1] > 0, 1.0, -1.0).astype(np.float32)  # exactly on the bounds
    actor, stats = train_bc(obs, act, [-1.0], [1.0], BCConfig(steps=50, hidden=(16,)))
    assert np.isfinite(stats["loss"]) and all(torch.isfinite(p).all() for p in actor.parameters())
    with pytest.raises(ValueError):
        train_bc(obs, act[:10], [-1.0], [1.0], BCConfig(steps=1))
    with pytest.raises(ValueError, match="non-finite"):
        train_bc(np.full((4, 2), np.nan), np.zeros((4, 1)), [-1.0], [1.0], BCConfig(steps=1))
    with pytest.raises(ValueError, match="steps"):
        BCConfig(steps=0)
