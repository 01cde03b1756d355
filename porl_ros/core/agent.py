"""PorlAgent: SAC with a batched critic ensemble and PORL's two stages.

presample: the (pre-trained) actor is frozen, bit for bit, parameters and optimizer
    state alike; only the critics (and, through Polyak averaging, their targets) learn,
    at a high update-to-data ratio, from what the frozen policy collects.
finetune:  standard SAC: critics every update, actor and temperature every K updates.

Fine-tuning remedies, each a PorlConfig option (docs/results.md has the ablation):
  absorbing_success     (applied by PorlLearner as it stores rewards) a success that ends
                        the episode is worth its reward for ever after, not nothing;
  mc_lower_bound        the TD target is floored by the discounted return the episode
                        actually collected from the transition on (Cal-QL-style anchoring);
  actor_q_pessimism     the actor maximises mean Q - k std over the ensemble;
  mc_target_mix         the TD target is blended with that observed return;
  n_step                the TD target sums n observed rewards before it bootstraps;
  trust_region_weight   the actor loss adds w * ||mean action - pre-trained mean action||^2
                        (normalised actions) toward a frozen copy of the starting actor;
  trust_region_q_filter ... only where the critic rates the pre-trained action higher;
  actor_q_normalise     the actor's Q term is divided by the batch mean |Q| (TD3+BC), so the
                        trust-region weight means the same whatever the reward scale;
  policy_average        the acting (published, evaluated) policy is a moving average of
                        the trained actor's weights;
  critic_obs_normalise  the critics see observations normalised with the pre-trained actor's
                        statistics (as the actor does), not raw.

All randomness (initialisation, target-subset choice, action noise in updates, batch
indices) comes from generators seeded with config.seed, so a CPU run is reproducible
bit for bit and the global RNGs are left untouched.

config.fused_update chooses how train_after_env_step runs the updates owed for an env step:
'off' one update at a time with batches sampled on the host (the reference path); 'eager'
and 'graph' as one fused block with the replay and the sampling on the device, the latter
captured as a CUDA graph (fused.py). Both paths call the same critic_step and
actor_and_alpha_step.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import PorlConfig
from .device import resolve_device
from .fused import FusedUpdater, resolve_update_mode
from .networks import CriticEnsemble, SquashedGaussianActor
from .phases import FINETUNE, PHASES, PRESAMPLE
from .replay import Batch, ReplayBuffer


class PorlAgent:
    """Critic ensemble + target ensemble + actor + entropy temperature."""

    CRITIC_STATS = ("critic_loss", "q_mean", "q_std")
    ACTOR_STATS = ("actor_loss", "alpha_loss", "alpha", "entropy", "trust_region")

    def __init__(self, obs_dim: int, act_dim: int, action_low: Sequence[float] | np.ndarray,
                 action_high: Sequence[float] | np.ndarray, config: Optional[PorlConfig] = None,
                 actor: Optional[SquashedGaussianActor] = None) -> None:
        self.config = cfg = config if config is not None else PorlConfig()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = resolve_device(cfg.device)
        # n-step targets are built on the host from the ring (replay.py): the fused block's
        # device-side sampling does not chain rows, so 'auto' stays on the reference path.
        self.update_mode = "off" if cfg.n_step > 1 and cfg.fused_update == "auto" else \
            resolve_update_mode(cfg.fused_update, self.device)
        self.target_entropy = float(-act_dim if cfg.target_entropy is None else cfg.target_entropy)

        # Build networks under a private RNG so the caller's global torch RNG is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            pretrained = actor is not None
            if actor is None:
                actor = SquashedGaussianActor(obs_dim, act_dim, cfg.actor_hidden, action_low, action_high,
                                              log_std_min=cfg.actor_log_std_min,
                                              log_std_max=cfg.actor_log_std_max)
            self.critic = CriticEnsemble(obs_dim, act_dim, cfg.n_critics, cfg.critic_hidden,
                                         cfg.critic_layer_norm)
        if cfg.critic_obs_normalise:  # the actor's own statistics (0 / 1 for an actor that has none)
            self.critic.normalise_observations(actor.obs_mean, actor.obs_std)
        if (actor.obs_dim, actor.act_dim) != (obs_dim, act_dim):
            raise ValueError(f"actor is for obs_dim={actor.obs_dim}, act_dim={actor.act_dim}; "
                             f"agent has obs_dim={obs_dim}, act_dim={act_dim}")
        low = torch.as_tensor(np.asarray(action_low, dtype=np.float32).reshape(-1))
        high = torch.as_tensor(np.asarray(action_high, dtype=np.float32).reshape(-1))
        if not (torch.allclose(actor.action_low.cpu(), low) and torch.allclose(actor.action_high.cpu(), high)):
            raise ValueError("actor's action bounds differ from the agent's action_low/action_high")
        self.actor = actor.to(self.device)
        # The starting (pre-trained) policy, frozen: the trust region's anchor. None for an actor
        # created here: staying close to random weights would only hold SAC from scratch back.
        self.reference = (copy.deepcopy(self.actor).requires_grad_(False).eval()
                          if cfg.trust_region_weight > 0 and pretrained else None)
        # The best actor seen so far (the regression guard's judgement): restored when the
        # fine-tuned one falls behind. The starting actor until a better one is seen.
        self.best_actor = copy.deepcopy(self.actor).requires_grad_(False).eval()
        # The policy that acts: the trained actor, or a moving average of its weights.
        self.averaged_actor = (copy.deepcopy(self.actor).requires_grad_(False).eval()
                               if cfg.policy_average > 0 else None)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(float(np.log(cfg.init_alpha)), device=self.device, requires_grad=True)

        self.actor_opt = self._adam(self.actor.parameters(), cfg.actor_lr)
        self.critic_opt = self._adam(self.critic.parameters(), cfg.critic_lr)
        self.alpha_opt = self._adam([self.log_alpha], cfg.alpha_lr)

        self.torch_gen = torch.Generator(device=self.device)
        self.torch_gen.manual_seed(cfg.seed)
        self.np_rng = np.random.default_rng(cfg.seed)
        self.phase = PRESAMPLE if cfg.presample_steps > 0 else FINETUNE
        self.critic_updates = 0
        self.actor_updates = 0
        self.actor_restores = 0
        self.fused = (FusedUpdater(self, capture=self.update_mode == "graph")
                      if self.update_mode != "off" else None)

    def _adam(self, params, lr: float) -> torch.optim.Adam:
        """Adam; on CUDA with the fused block, the fused kernel with its step count on the device
        (capturable), which graph capture needs."""
        if self.update_mode != "off" and self.device.type == "cuda":
            return torch.optim.Adam(params, lr=lr, fused=True, capturable=True)
        return torch.optim.Adam(params, lr=lr)

    # ------------------------------------------------------------------ phases
    def set_phase(self, name: str) -> None:
        if name not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {name!r}")
        self.phase = name

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    @property
    def policy(self) -> SquashedGaussianActor:
        """The actor that acts, is published and evaluated (the trained one unless averaged)."""
        return self.averaged_actor if self.averaged_actor is not None else self.actor

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.policy.act(obs, deterministic)

    # ------------------------------------------------------------------ updates
    def sample_target_members(self) -> torch.Tensor:
        """A random subset of M distinct target critics (REDQ/RLPD), from the seeded generator."""
        perm = torch.randperm(self.config.n_critics, generator=self.torch_gen, device=self.device)
        return perm[: self.config.n_target_critics]

    @torch.no_grad()
    def compute_target(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """TD target y = r + gamma (1 - d) (min_{m in subset} Q'_m(s', a') - alpha log pi(a'|s'));
        for an n-step batch r is the discounted reward sum and gamma ** steps the discount."""
        next_action, next_log_prob = self.actor(batch.next_obs, self.torch_gen)
        members = self.sample_target_members()
        next_q = self.critic_target(batch.next_obs, next_action, members).min(dim=0).values
        soft_q = next_q - self.log_alpha.exp() * next_log_prob
        discount = self.config.gamma if batch.discount is None else batch.discount
        y = batch.reward + discount * (1.0 - batch.terminated) * soft_q
        if self.config.mc_lower_bound and batch.mc_return is not None:
            # What the episode actually collected is a floor under the value (-inf: not known yet).
            y = torch.maximum(y, batch.mc_return)
        mix = self.config.mc_target_mix
        if mix > 0 and batch.mc_return is not None:
            # Part of the target is what actually happened after this action: unlike the bootstrap,
            # it does not depend on how well the critic already ranks the next state's actions.
            y = torch.where(torch.isfinite(batch.mc_return), (1.0 - mix) * y + mix * batch.mc_return, y)
        return y, members

    def sample_batch(self, replay: ReplayBuffer) -> Batch:
        """One training minibatch from `replay` (n-step when config.n_step > 1)."""
        cfg = self.config
        return replay.sample(cfg.batch_size, self.device, self.np_rng, n_step=cfg.n_step, gamma=cfg.gamma)

    def actor_due(self, critic_updates: int) -> bool:
        """Whether the critic update that brings the count to `critic_updates` is followed by an
        actor and temperature update (finetune only, every actor_update_every critic updates)."""
        return self.phase == FINETUNE and critic_updates % self.config.actor_update_every == 0

    def critic_step(self, batch: Batch) -> list[torch.Tensor]:
        """One critic update and the Polyak step of the targets: tensor work only (no host sync,
        no counters), so the fused block can capture it. Returns CRITIC_STATS as 0-d tensors."""
        y, _ = self.compute_target(batch)
        q = self.critic(batch.obs, batch.action)  # [N, B]
        # Sum of per-member MSEs: each member gets exactly its own regression gradient.
        per_member = (q - y.unsqueeze(0)).pow(2).mean(dim=1)
        self.critic_opt.zero_grad(set_to_none=True)
        per_member.sum().backward()
        self.critic_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()),
                                 self.config.tau)
        return [per_member.detach().mean(), q.detach().mean(), q.detach().std(dim=0).mean()]

    def update(self, batch: Batch) -> dict[str, float]:
        """One critic update (+ Polyak); actor and alpha too when in finetune and due."""
        stats = self.critic_step(batch)
        self.critic_updates += 1
        names = list(self.CRITIC_STATS)
        if self.actor_due(self.critic_updates):
            stats += self._update_actor_and_alpha(batch.obs)
            names += self.ACTOR_STATS
        return dict(zip(names, torch.stack(stats).tolist()))  # one device sync per update

    def _trust_region(self, obs: torch.Tensor) -> torch.Tensor:
        """Mean squared distance (normalised actions) of the actor's mean action from the frozen
        pre-trained one; with the Q-filter, only over states where the critic prefers the latter."""
        mean = self.actor.mean_action(obs)
        with torch.no_grad():
            anchor = self.reference.mean_action(obs)
        distance = ((mean - anchor) / self.actor.action_scale).pow(2).sum(dim=-1)
        if self.config.trust_region_q_filter:
            with torch.no_grad():
                q = self.critic(torch.cat([obs, obs]), torch.cat([mean.detach(), anchor])).mean(dim=0)
                distance = distance * (q[len(obs):] > q[:len(obs)])
        return distance.mean()

    def actor_and_alpha_step(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """Maximise mean-ensemble Q + entropy (- the trust region); then tune alpha toward the
        target entropy. Tensor work only (no host sync, no counters); returns ACTOR_STATS."""
        cfg = self.config
        self.critic.requires_grad_(False)  # no wasted critic gradients
        try:
            action, log_prob = self.actor(obs, self.torch_gen)
            q_members = self.critic(obs, action)
            q = q_members.mean(dim=0)
            if cfg.actor_q_pessimism > 0:
                q = q - cfg.actor_q_pessimism * q_members.std(dim=0)
            q_term = q.mean()
            if cfg.actor_q_normalise:
                q_term = q_term / q.detach().abs().mean().clamp_min(1e-6)
            alpha = self.log_alpha.detach().exp()
            actor_loss = (alpha * log_prob).mean() - q_term
            trust_region = torch.zeros((), device=self.device)
            if self.reference is not None:
                trust_region = self._trust_region(obs)
                actor_loss = actor_loss + cfg.trust_region_weight * trust_region
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
        finally:
            self.critic.requires_grad_(True)
        if self.averaged_actor is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.averaged_actor.parameters()), list(self.actor.parameters()),
                                     cfg.policy_average)
        alpha_loss = -(self.log_alpha.exp() * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return [actor_loss.detach(), alpha_loss.detach(), self.log_alpha.detach().exp(),
                -log_prob.detach().mean(), trust_region.detach()]

    def _update_actor_and_alpha(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """actor_and_alpha_step, counted."""
        stats = self.actor_and_alpha_step(obs)
        self.actor_updates += 1
        return stats

    @property
    def utd_ratio_now(self) -> int:
        """Critic updates owed per env step in the current phase."""
        return self.config.utd_ratio_in(self.phase == PRESAMPLE)

    def train_after_env_step(self, replay: ReplayBuffer) -> dict[str, float]:
        """utd_ratio updates on fresh uniform batches; {} until replay holds learning_starts.

        Returns the mean of each metric over the updates that produced it, plus
        `updates` (critic updates done in this call).
        """
        cfg = self.config
        if len(replay) < max(cfg.effective_learning_starts, 1):
            return {}
        updates = self.utd_ratio_now
        if self.fused is not None:
            return self.fused.run(replay, updates)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for _ in range(updates):
            batch = self.sample_batch(replay)
            for k, v in self.update(batch).items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
        out = {k: sums[k] / counts[k] for k in sums}
        out["updates"] = float(updates)
        return out

    # ------------------------------------------------------------------ best actor
    def remember_best_actor(self) -> None:
        """The acting policy becomes the one restore_best_actor() puts back."""
        self.best_actor.load_state_dict(self.policy.state_dict())

    def restore_best_actor(self, lr_factor: float) -> None:
        """Put the best actor back and back off: a fresh Adam (no momentum toward the regression)
        with the actor learning rate times lr_factor."""
        if not 0.0 < lr_factor <= 1.0:
            raise ValueError(f"lr_factor must be in (0, 1], got {lr_factor}")
        self.actor.load_state_dict(self.best_actor.state_dict())
        if self.averaged_actor is not None:
            self.averaged_actor.load_state_dict(self.best_actor.state_dict())
        lr = self.actor_lr * lr_factor
        self.actor_opt = self._adam(self.actor.parameters(), lr)
        self.actor_restores += 1
        if self.fused is not None:
            self.fused.invalidate()  # its graphs hold the old optimizer's state

    @property
    def actor_lr(self) -> float:
        return float(self.actor_opt.param_groups[0]["lr"])

    # ------------------------------------------------------------------ full state
    _COUNTERS = ("critic_updates", "actor_updates", "actor_restores")

    def _modules(self) -> tuple[str, ...]:
        """The networks of the state (the trust region's anchor too: a resumed run keeps its own)."""
        optional = tuple(name for name in ("reference", "averaged_actor") if getattr(self, name) is not None)
        return ("actor", "critic", "critic_target", "best_actor") + optional

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume learning exactly, as a flat name -> CPU tensor dict.

        Networks, targets, log_alpha, Adam states, counters, phase and RNG states;
        suitable for safetensors (no pickle).
        """
        out: dict[str, torch.Tensor] = {}
        for prefix in self._modules():
            for k, v in getattr(self, prefix).state_dict().items():
                out[f"{prefix}.{k}"] = v.detach().cpu().clone()
        out["log_alpha"] = self.log_alpha.detach().cpu().clone()
        out["actor_opt.lr"] = torch.tensor(self.actor_lr, dtype=torch.float64)  # lowered by restores
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt), ("alpha_opt", self.alpha_opt)):
            for idx, st in opt.state_dict()["state"].items():
                for k, v in st.items():
                    out[f"{name}.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().clone()
        for c in self._COUNTERS:
            out[f"counter.{c}"] = torch.tensor(getattr(self, c), dtype=torch.int64)
        out["phase"] = torch.tensor(PHASES.index(self.phase), dtype=torch.int64)
        out["rng.torch"] = self.torch_gen.get_state().cpu().clone()
        if self.fused is not None:
            out["rng.batch_indices"] = self.fused.generator.get_state().cpu().clone()
        st = self.np_rng.bit_generator.state
        words = [st["state"]["state"], st["state"]["inc"], st["has_uint32"], st["uinteger"]]
        out["rng.numpy"] = torch.tensor(
            np.frombuffer(b"".join(int(w).to_bytes(16, "little") for w in words), dtype=np.uint8).copy())
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of state_tensors(); raises ValueError naming a missing or mis-shaped entry."""
        def get(name: str) -> torch.Tensor:
            if name not in tensors:
                raise ValueError(f"learner state: missing tensor {name!r}")
            return tensors[name]

        for prefix in self._modules():
            module = getattr(self, prefix)
            sd = module.state_dict()
            new = {}
            for k, v in sd.items():
                t = get(f"{prefix}.{k}")
                if t.shape != v.shape:
                    raise ValueError(f"learner state: {prefix}.{k} has shape {tuple(t.shape)}, "
                                     f"expected {tuple(v.shape)}")
                new[k] = t
            module.load_state_dict(new)
        with torch.no_grad():
            self.log_alpha.copy_(get("log_alpha"))
        for name, opt in (("actor_opt", self.actor_opt), ("critic_opt", self.critic_opt), ("alpha_opt", self.alpha_opt)):
            sd = opt.state_dict()
            n_params = len(sd["param_groups"][0]["params"])
            state = {}
            for idx in range(n_params):
                keys = [k for k in tensors if k.startswith(f"{name}.{idx}.")]
                if keys:
                    state[idx] = {k.rsplit(".", 1)[1]: tensors[k].clone() for k in keys}
            sd["state"] = state
            opt.load_state_dict(sd)  # moves state to the parameters' device
        self.actor_opt.param_groups[0]["lr"] = float(get("actor_opt.lr"))
        for c in self._COUNTERS:
            setattr(self, c, int(get(f"counter.{c}")))
        self.phase = PHASES[int(get("phase"))]
        self.torch_gen.set_state(get("rng.torch").to(torch.uint8))
        if self.fused is not None:
            if "rng.batch_indices" in tensors:  # absent in a state saved with fused_update off
                self.fused.generator.set_state(tensors["rng.batch_indices"].to(torch.uint8))
            self.fused.invalidate()  # optimizer states (and the actor lr) were replaced
        raw = get("rng.numpy").numpy().tobytes()
        words = [int.from_bytes(raw[i:i + 16], "little") for i in range(0, 64, 16)]
        self.np_rng.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": words[0], "inc": words[1]},
                                           "has_uint32": words[2], "uinteger": words[3]}
