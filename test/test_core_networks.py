"""The batched ensemble is exactly N independent MLPs; the actor respects its bounds."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from porl_ros.core.networks import CriticEnsemble, SquashedGaussianActor


@pytest.fixture(autouse=True)
def _isolated_torch_rng():
    """Tests seed torch; restore the global RNG afterwards so no state leaks between tests."""
    with torch.random.fork_rng(devices=[]):
        yield


def reference_members(ens: CriticEnsemble) -> list[nn.Sequential]:
    """Plain nn.Linear / nn.LayerNorm stacks carrying the ensemble's weights."""
    members = []
    for n in range(ens.n):
        layers: list[nn.Module] = []
        for i, lin in enumerate(ens.linears):
            ref = nn.Linear(lin.in_features, lin.out_features)
            ref.weight.data.copy_(lin.weight.data[n].T)
            ref.bias.data.copy_(lin.bias.data[n, 0])
            layers.append(ref)
            if ens.norms is not None:
                ln = nn.LayerNorm(lin.out_features)
                ln.weight.data.copy_(ens.norms[i].weight.data[n, 0])
                ln.bias.data.copy_(ens.norms[i].bias.data[n, 0])
                layers.append(ln)
            layers.append(nn.ReLU())
        head = nn.Linear(ens.head.in_features, 1)
        head.weight.data.copy_(ens.head.weight.data[n].T)
        head.bias.data.copy_(ens.head.bias.data[n, 0])
        layers.append(head)
        members.append(nn.Sequential(*layers))
    return members


@pytest.mark.parametrize("layer_norm", [False, True])
def test_ensemble_matches_separate_networks(layer_norm):
    torch.manual_seed(0)
    ens = CriticEnsemble(obs_dim=7, act_dim=3, n=5, hidden=(32, 16), layer_norm=layer_norm)
    if layer_norm:  # make the LayerNorm affine parameters non-trivial so they are tested too
        for norm in ens.norms:
            norm.weight.data.uniform_(0.5, 1.5)
            norm.bias.data.uniform_(-0.5, 0.5)
    refs = reference_members(ens)
    obs, act = torch.randn(64, 7), torch.rand(64, 3) * 2 - 1
    q = ens(obs, act)
    assert q.shape == (5, 64)
    expected = torch.stack([r(torch.cat([obs, act], -1)).squeeze(-1) for r in refs])
    torch.testing.assert_close(q, expected, rtol=1e-5, atol=1e-6)
    # Members really are different networks.
    assert (q[0] - q[1]).abs().max() > 1e-3
    # Gradients match too: member n's gradient only depends on member n's loss.
    q.pow(2).sum().backward()
    expected.pow(2).sum().backward()
    for n, r in enumerate(refs):
        torch.testing.assert_close(ens.linears[0].weight.grad[n].T, r[0].weight.grad, rtol=1e-4, atol=1e-6)


def test_member_subset_equals_rows_of_full_output():
    torch.manual_seed(1)
    ens = CriticEnsemble(4, 2, n=10, hidden=(16, 16), layer_norm=True)
    obs, act = torch.randn(8, 4), torch.randn(8, 2)
    members = torch.tensor([7, 2])
    sub = ens(obs, act, members)
    assert sub.shape == (2, 8)
    torch.testing.assert_close(sub, ens(obs, act)[members], rtol=0, atol=1e-6)


def test_actor_actions_within_bounds_and_log_prob_consistent():
    torch.manual_seed(0)
    low, high = np.array([-2.0, 0.0, 10.0]), np.array([1.0, 0.5, 12.0])
    actor = SquashedGaussianActor(5, 3, (32, 32), low, high)
    obs = torch.randn(4096, 5) * 3
    a, logp = actor(obs)
    assert torch.all(a >= torch.tensor(low, dtype=torch.float32))
    assert torch.all(a <= torch.tensor(high, dtype=torch.float32))
    assert torch.isfinite(logp).all()
    # log_prob(obs, a) re-evaluates the density of the sampled action; it must agree
    # with the value computed during sampling (except where tanh saturated in float32).
    unsat = ((a - actor.action_bias) / actor.action_scale).abs() < 0.999
    ok = unsat.all(-1)
    torch.testing.assert_close(actor.log_prob(obs[ok], a[ok]), logp[ok], rtol=1e-3, atol=1e-3)
    # The deterministic action is the squashed mean and lies strictly inside the box.
    det = actor.act(obs[:3].numpy(), deterministic=True)
    assert det.shape == (3, 3) and np.all(det > low) and np.all(det < high)
    assert actor.act(obs[0].numpy()).shape == (3,)


def test_actor_density_integrates_to_one_in_1d():
    """The tanh change of variables (with scaling) gives a proper density on [low, high]."""
    torch.manual_seed(0)
    actor = SquashedGaussianActor(1, 1, (8,), [-3.0], [5.0])
    obs = torch.zeros(1, 1)
    xs = torch.linspace(-3.0, 5.0, 200001)[1:-1].unsqueeze(-1)
    dens = actor.log_prob(obs.expand(len(xs), 1), xs, clip_eps=1e-12).exp()
    integral = torch.trapezoid(dens, xs.squeeze(-1)).item()
    assert math.isclose(integral, 1.0, abs_tol=1e-2)


def test_actor_obs_normalisation_buffers_are_used_and_saved():
    actor = SquashedGaussianActor(2, 1, (8,), [-1.0], [1.0], obs_mean=[10.0, -5.0], obs_std=[2.0, 4.0])
    plain = SquashedGaussianActor(2, 1, (8,), [-1.0], [1.0])
    plain.load_state_dict({k: v for k, v in actor.state_dict().items() if not k.startswith("obs_")}, strict=False)
    x = np.array([[12.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(actor.act(x), plain.act((x - [10.0, -5.0]) / [2.0, 4.0]), rtol=1e-6)
    assert "obs_mean" in actor.state_dict() and "obs_std" in actor.state_dict()
