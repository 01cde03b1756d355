"""Networks: a batched critic ensemble and the tanh-squashed Gaussian actor.

The ensemble is one module whose weights are shaped [N, in, out], so N critics cost N
batched matmuls (torch.baddbmm) per layer instead of N Python-level module calls; on a
small CPU this is what keeps a 10-critic, UTD-16 learner usable.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LOG_2 = math.log(2.0)


class BatchedLinear(nn.Module):
    """N independent linear layers: y[n] = x[n] @ weight[n] + bias[n].

    weight: [N, in, out] (note: transposed w.r.t. nn.Linear), bias: [N, 1, out].
    Each member is initialised exactly like nn.Linear (uniform +-1/sqrt(in)).
    """

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.n, self.in_features, self.out_features = n, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [N', B, in] -> [N', B, out]; `members` selects N' of the N layers."""
        w, b = self.weight, self.bias
        if members is not None:
            w, b = w.index_select(0, members), b.index_select(0, members)
        return torch.baddbmm(b, x, w)


class BatchedLayerNorm(nn.Module):
    """N independent LayerNorms over the last dim, each with its own affine parameters."""

    def __init__(self, n: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))

    def forward(self, x: torch.Tensor, members: Optional[torch.Tensor] = None) -> torch.Tensor:
        w, b = self.weight, self.bias
        if members is not None:
            w, b = w.index_select(0, members), b.index_select(0, members)
        return torch.addcmul(b, F.layer_norm(x, x.shape[-1:], eps=self.eps), w)


class CriticEnsemble(nn.Module):
    """N Q-networks Q_n(s, a) = MLP([s, a]) evaluated together; layers Linear[-LayerNorm]-ReLU.

    `normalise_observations(mean, std)` makes it see (obs - mean) / std clipped to +-OBS_CLIP:
    a fine-tuning critic takes the pre-trained actor's statistics, so centimetre differences
    between states (a gripper beside or on an object) reach it at a scale it can resolve, as
    they reach the actor. Without it the critic sees raw observations.
    """

    OBS_CLIP = 10.0

    def __init__(self, obs_dim: int, act_dim: int, n: int = 10,
                 hidden: Sequence[int] = (256, 256), layer_norm: bool = True) -> None:
        super().__init__()
        self.n, self.obs_dim, self.act_dim = n, obs_dim, act_dim
        self.hidden, self.layer_norm = tuple(hidden), layer_norm
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        self.obs_clip: Optional[float] = None  # set with the statistics
        sizes = [obs_dim + act_dim, *self.hidden]
        self.linears = nn.ModuleList(BatchedLinear(n, i, o) for i, o in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(BatchedLayerNorm(n, o) for o in self.hidden) if layer_norm else None
        self.head = BatchedLinear(n, sizes[-1], 1)

    @torch.no_grad()
    def normalise_observations(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.obs_mean.copy_(mean)
        self.obs_std.copy_(std)
        self.obs_clip = self.OBS_CLIP

    def forward(self, obs: torch.Tensor, action: torch.Tensor,
                members: Optional[torch.Tensor] = None) -> torch.Tensor:
        """obs [B, obs_dim], action [B, act_dim] -> Q values [N', B] (N' = len(members) or N)."""
        if self.obs_clip is not None:
            obs = ((obs - self.obs_mean) / self.obs_std).clamp(-self.obs_clip, self.obs_clip)
        x = torch.cat([obs, action], dim=-1)
        n = self.n if members is None else members.numel()
        x = x.unsqueeze(0).expand(n, *x.shape)
        for i, linear in enumerate(self.linears):
            x = linear(x, members)
            if self.norms is not None:
                x = self.norms[i](x, members)
            x = F.relu(x)
        return self.head(x, members).squeeze(-1)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(i, o), nn.ReLU()]
    return nn.Sequential(*layers)


class SquashedGaussianActor(nn.Module):
    """SAC policy: a = low + (tanh(u) + 1) / 2 * (high - low), u ~ N(mu(s), sigma(s)).

    Observations are normalised with fixed buffers (obs_mean, obs_std; defaults 0 / 1)
    that travel with the weights, so a policy trained by BC on normalised inputs is
    used and fine-tuned exactly as it was trained. Bounds are buffers for the same reason.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int],
                 action_low: Sequence[float] | np.ndarray, action_high: Sequence[float] | np.ndarray,
                 obs_mean: Optional[Sequence[float] | np.ndarray] = None,
                 obs_std: Optional[Sequence[float] | np.ndarray] = None,
                 log_std_min: float = -5.0, log_std_max: float = 2.0) -> None:
        super().__init__()
        low = torch.as_tensor(np.asarray(action_low, dtype=np.float32).reshape(-1))
        high = torch.as_tensor(np.asarray(action_high, dtype=np.float32).reshape(-1))
        if low.shape != (act_dim,) or high.shape != (act_dim,):
            raise ValueError(f"action_low/action_high must have {act_dim} values, "
                             f"got {tuple(low.shape)} and {tuple(high.shape)}")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (low < high).all()):
            raise ValueError("action bounds must be finite with low < high")
        mean = torch.zeros(obs_dim) if obs_mean is None else torch.as_tensor(
            np.asarray(obs_mean, dtype=np.float32).reshape(-1))
        std = torch.ones(obs_dim) if obs_std is None else torch.as_tensor(
            np.asarray(obs_std, dtype=np.float32).reshape(-1))
        if mean.shape != (obs_dim,) or std.shape != (obs_dim,):
            raise ValueError(f"obs_mean/obs_std must have {obs_dim} values")
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("obs_mean must be finite and obs_std finite and > 0")
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        self.register_buffer("obs_mean", mean.clone())
        self.register_buffer("obs_std", std.clone())
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)
        self.trunk = _mlp([obs_dim, *self.hidden])
        self.mu = nn.Linear(self.hidden[-1], act_dim)
        self.log_std = nn.Linear(self.hidden[-1], act_dim)

    @property
    def action_low(self) -> torch.Tensor:
        return self.action_bias - self.action_scale

    @property
    def action_high(self) -> torch.Tensor:
        return self.action_bias + self.action_scale

    def distribution_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and log-std; log-std squashed smoothly into [min, max]."""
        h = self.trunk((obs - self.obs_mean) / self.obs_std)
        log_std = torch.tanh(self.log_std(h))
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1.0)
        return self.mu(h), log_std

    def _squash_log_det(self, u: torch.Tensor) -> torch.Tensor:
        """sum log |da/du| with a = scale * tanh(u) + bias, computed stably."""
        log_dtanh = 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))
        return (log_dtanh + torch.log(self.action_scale)).sum(-1)

    def forward(self, obs: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (reparameterised) action in env bounds and its log-probability."""
        mu, log_std = self.distribution_params(obs)
        std = log_std.exp()
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        u = mu + std * noise
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - self._squash_log_det(u)
        return torch.tanh(u) * self.action_scale + self.action_bias, log_prob

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action: the squashed mean (what deployment uses)."""
        mu, _ = self.distribution_params(obs)
        return torch.tanh(mu) * self.action_scale + self.action_bias

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor, clip_eps: float = 1e-5) -> torch.Tensor:
        """log pi(action | obs) for actions in env bounds (used by BC).

        Actions are mapped to (-1, 1) and clipped to the open interval so atanh stays
        finite for demo actions that sit exactly on the bounds.
        """
        y = ((action - self.action_bias) / self.action_scale).clamp(-1.0 + clip_eps, 1.0 - clip_eps)
        u = torch.atanh(y)
        mu, log_std = self.distribution_params(obs)
        z = (u - mu) / log_std.exp()
        log_prob = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_prob - self._squash_log_det(u)

    @torch.no_grad()
    def set_constant_log_std(self, log_std: float) -> None:
        """Make the log-std state-independent and equal to `log_std` (inside the actor's bounds)."""
        lo, hi = self.log_std_min, self.log_std_max
        if not lo < log_std < hi:
            raise ValueError(f"log-std {log_std} is outside this actor's bounds ({lo}, {hi})")
        self.log_std.weight.zero_()
        self.log_std.bias.fill_(math.atanh(2.0 * (log_std - lo) / (hi - lo) - 1.0))

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True,
            generator: Optional[torch.Generator] = None) -> np.ndarray:
        """numpy in, numpy out; obs [obs_dim] -> [act_dim] or [B, obs_dim] -> [B, act_dim]."""
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if x.shape[-1] != self.obs_dim or x.ndim not in (1, 2):
            raise ValueError(f"obs must have shape [{self.obs_dim}] or [B, {self.obs_dim}], got {x.shape}")
        t = torch.from_numpy(x[None] if single else x).to(self.obs_mean.device)
        a = self.mean_action(t) if deterministic else self(t, generator)[0]
        out = a.cpu().numpy()
        return out[0] if single else out
