"""Behaviour cloning into the same SquashedGaussianActor (and checkpoint format) SAC uses,
so a BC policy is a valid PORL starting point with no conversion.

Loss = nll_weight * -log pi(a_demo | s) + mse_weight * ||mean_action(s) - a_demo||^2
(MSE measured in the normalised [-1, 1] action space, so every dimension counts equally).
Demo actions are clipped into the open interval (-1, 1) before atanh so the likelihood
stays finite for actions on the bounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .device import resolve_device
from .networks import SquashedGaussianActor


@dataclass
class BCConfig:
    steps: int = 5000  # gradient steps (an "epoch" count is steps * batch_size / n)
    batch_size: int = 256
    lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 256)
    seed: int = 0
    nll_weight: float = 1.0
    mse_weight: float = 1.0
    weight_decay: float = 0.0
    obs_normalisation: bool = True
    min_obs_std: float = 1e-3  # floor on per-dim std so constant features do not blow up
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        for name in ("lr", "min_obs_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("nll_weight", "mse_weight", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.nll_weight == 0 and self.mse_weight == 0:
            raise ValueError("nll_weight and mse_weight cannot both be 0")
        self.hidden = tuple(self.hidden)
        if not self.hidden or not all(isinstance(h, int) and h > 0 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {self.hidden!r}")


def train_bc(observations: np.ndarray, actions: np.ndarray,
             action_low: Sequence[float] | np.ndarray, action_high: Sequence[float] | np.ndarray,
             config: Optional[BCConfig] = None,
             progress: Optional[Callable[[int, int, float], None]] = None,
             ) -> tuple[SquashedGaussianActor, dict[str, float]]:
    """Fit an actor to (observation, action) demos; returns (actor on CPU, stats)."""
    cfg = config if config is not None else BCConfig()
    obs = np.asarray(observations, dtype=np.float32)
    act = np.asarray(actions, dtype=np.float32)
    if obs.ndim != 2 or act.ndim != 2 or obs.shape[0] != act.shape[0] or obs.shape[0] < 1:
        raise ValueError(f"observations [N, obs_dim] and actions [N, act_dim] with the same N >= 1 "
                         f"expected, got {obs.shape} and {act.shape}")
    if not (np.isfinite(obs).all() and np.isfinite(act).all()):
        raise ValueError("observations/actions contain non-finite values")
    low = np.asarray(action_low, dtype=np.float32).reshape(-1)
    high = np.asarray(action_high, dtype=np.float32).reshape(-1)
    n, obs_dim = obs.shape
    act_dim = act.shape[1]
    if cfg.obs_normalisation:
        mean, std = obs.mean(0), np.maximum(obs.std(0), cfg.min_obs_std)
    else:
        mean, std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
    device = resolve_device(cfg.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        actor = SquashedGaussianActor(obs_dim, act_dim, cfg.hidden, low, high, mean, std,
                                      cfg.log_std_min, cfg.log_std_max).to(device)
    opt = torch.optim.AdamW(actor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    obs_t, act_t = torch.from_numpy(obs).to(device), torch.from_numpy(act).to(device)
    act_t = torch.maximum(torch.minimum(act_t, actor.action_high), actor.action_low)
    start = time.perf_counter()
    loss_v = nll_v = mse_v = float("nan")
    every = max(1, cfg.steps // 100)
    for step in range(1, cfg.steps + 1):
        idx = torch.from_numpy(rng.integers(0, n, size=cfg.batch_size)).to(device)  # with replacement
        o, a = obs_t[idx], act_t[idx]
        nll = -actor.log_prob(o, a).mean()
        mse = ((actor.mean_action(o) - a) / actor.action_scale).pow(2).sum(-1).mean()
        loss = cfg.nll_weight * nll + cfg.mse_weight * mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % every == 0 or step == cfg.steps:
            loss_v, nll_v, mse_v = loss.item(), nll.item(), mse.item()
            if progress is not None:
                progress(step, cfg.steps, loss_v)
    actor.eval()
    with torch.no_grad():
        full_mse = float(((actor.mean_action(obs_t) - act_t) / actor.action_scale).pow(2).sum(-1).mean())
    stats = {"loss": loss_v, "nll": nll_v, "mse": mse_v, "dataset_mse": full_mse,
             "steps": float(cfg.steps), "n_samples": float(n), "seconds": time.perf_counter() - start}
    return actor.cpu(), stats
