"""The learner's bookkeeping around PorlAgent, free of ROS.

`PorlLearner` is what the learner node wraps and what the experiment runner drives
in-process: it validates and stores transitions (per-source sequence numbers, gaps
counted, duplicates refused; rewards scaled by `reward_scale`), owns the PORL phase
(switched after T env steps or by `end_presample`), runs the updates owed per env step
(all at once in lockstep, or one at a time within the same budget when free running),
decides when new actor weights are due, and keeps the episode statistics (return,
success, Q calibration) a user watches. `starting_actor` prepares the actor a run
starts from, for the node and the experiment alike.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .agent import PorlAgent
from .checkpoint import PolicyMeta
from .config import PorlConfig
from .guard import RegressionGuard
from .networks import SquashedGaussianActor
from .phases import FINETUNE, PRESAMPLE, PhaseSchedule
from .replay import ReplayBuffer


class TransitionRejected(ValueError):
    """A transition refused at the boundary; the message names the field."""


@dataclass
class EpisodeRecord:
    source: int
    episode: int
    env_steps: int  # learner env-step count at the episode's end
    length: int
    episode_return: float
    success: bool
    phase: str
    # mean(Q(s,a) - discounted return to go) over the episode, Q at its end, in the critic's units
    # (rewards x reward_scale); episode_return is the environment's own.
    q_calibration_gap: float


@dataclass
class _OpenEpisode:
    episode: int
    rewards: list = field(default_factory=list)  # as received (reward_scale is applied when it closes)
    # (state, action) of every step: the critic judges them all at once when the episode
    # ends, with its weights of that moment (and one batched forward instead of one per step).
    states: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    success: bool = False
    inserts: list = field(default_factory=list)  # replay insert numbers, for the observed returns at its end


# Forward seq jumps of one bridge remembered for undoing (a transition at the seq expected before
# one proves it spurious); older ones are taken as real losses.
MAX_PENDING_JUMPS = 16


class PorlLearner:
    """Replay + agent + phase schedule + statistics."""

    def __init__(self, agent: PorlAgent, replay_capacity: int, num_sources: int = 1,
                 weights_every_env_steps: int = 1, stats_window: int = 20,
                 max_abs_reward: float = 1e6, max_seq_jump: int = 100_000) -> None:
        if replay_capacity < 1:
            raise ValueError(f"replay_capacity must be >= 1, got {replay_capacity}")
        if num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {num_sources}")
        if weights_every_env_steps < 1:
            raise ValueError(f"weights_every_env_steps must be >= 1, got {weights_every_env_steps}")
        if not max_abs_reward > 0:
            raise ValueError(f"max_abs_reward must be > 0, got {max_abs_reward}")
        self.agent = agent
        self.config: PorlConfig = agent.config
        self.replay = ReplayBuffer(replay_capacity, agent.obs_dim, agent.act_dim)
        self.schedule = PhaseSchedule(self.config.presample_steps)
        self.num_sources = num_sources
        self.weights_every = weights_every_env_steps
        self.max_abs_reward = float(max_abs_reward)
        # A larger forward jump is no lost message but a forged or corrupt seq; accepting it
        # would make every later genuine transition look like a duplicate.
        self.max_seq_jump = int(max_seq_jump)
        low = agent.actor.action_low.cpu().numpy()
        high = agent.actor.action_high.cpu().numpy()
        # Actions are checked against the bounds with a small tolerance for float32 rounding.
        self._low, self._high = low - 1e-4 * (high - low), high + 1e-4 * (high - low)
        self.env_steps = 0
        self.next_seq = [0] * num_sources
        self.seq_gaps = 0
        self.rejected = collections.Counter()  # rejected transitions by field
        self.bridge_restarts = 0  # a bridge started again from seq 0 (it persists nothing)
        self._last_position: dict[int, tuple[int, int]] = {}  # source -> (episode, step) last stored
        # A forward seq jump is accepted (messages can be lost) but not trusted: while a transition
        # may still arrive at the seq expected before it, the jump can be undone. source -> the
        # latest MAX_PENDING_JUMPS jumps, oldest first: (that seq, the gap counted, last position and
        # open episode before the jump). So one forged transition with seq + N never makes the next
        # N genuine ones look like duplicates.
        self._jumps: dict[int, list[tuple[int, int, Optional[tuple[int, int]], Optional[_OpenEpisode]]]] = {}
        self.seq_jumps_undone = 0  # jumps a transition at the old expected seq proved spurious
        self.policy_version = 0
        self._actor_updates_published = agent.actor_updates
        self._restores_published = agent.actor_restores
        cfg = self.config
        self.guard = (RegressionGuard(cfg.guard_window, cfg.guard_success_margin, cfg.guard_return_margin)
                      if cfg.regression_guard else None)
        self.guard_events: list[str] = []  # what the guard did, for the node to log (drained by it)
        self.episodes: list[EpisodeRecord] = []
        self._open: dict[int, _OpenEpisode] = {}
        self._recent = collections.deque(maxlen=stats_window)
        self.last_metrics: dict[str, float] = {}
        self._update_times: collections.deque = collections.deque(maxlen=200)  # (time, critic_updates)
        self._step_times: collections.deque = collections.deque(maxlen=200)  # (time, env_steps)

    @property
    def phase(self) -> str:
        return self.agent.phase

    # ------------------------------------------------------------------ input
    def is_bridge_restart(self, source: int, seq: int) -> bool:
        """seq 0 after a higher seq: the bridge process restarted (it persists nothing)."""
        return 0 <= source < self.num_sources and seq == 0 and self.next_seq[source] > 0

    def validate(self, source: int, seq: int, state, action, reward, next_state,
                 episode: Optional[int] = None, step: Optional[int] = None) -> tuple:
        """Check one transition; returns float32 arrays or raises TransitionRejected naming the field.

        Every message starts with the field's name (the key of `rejected`).
        """
        def vector(name: str, value, size: int) -> np.ndarray:
            try:
                arr = np.asarray(value, dtype=np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise TransitionRejected(f"{name} is not a numeric vector") from None
            if arr.shape[0] != size:
                raise TransitionRejected(f"{name} has {arr.shape[0]} values, expected {size}")
            if not np.all(np.isfinite(arr)):
                raise TransitionRejected(f"{name} contains NaN or inf")
            return arr

        if not 0 <= source < self.num_sources:
            raise TransitionRejected(f"bridge_id {source} is not in [0, {self.num_sources})")
        restart = self.is_bridge_restart(source, seq)
        undoes_jump = self.undoes_jump(source, seq)
        if seq < self.next_seq[source] and not restart and not undoes_jump:
            raise TransitionRejected(f"seq {seq} of bridge {source} is a duplicate or out of order "
                                     f"(expected >= {self.next_seq[source]})")
        if seq > self.next_seq[source] + self.max_seq_jump:
            raise TransitionRejected(f"seq {seq} of bridge {source} jumps more than {self.max_seq_jump} ahead "
                                     f"of the expected {self.next_seq[source]}")
        last = None if restart else self._jump_at(source, seq)[2] if undoes_jump else self._last_position.get(source)
        if episode is not None and last is not None and episode < last[0]:
            raise TransitionRejected(f"episode {episode} of bridge {source} goes back (last stored {last[0]})")
        if step is not None and last is not None and episode == last[0] and step <= last[1]:
            raise TransitionRejected(f"step {step} of bridge {source} episode {episode} does not advance "
                                     f"(last stored {last[1]})")
        s = vector("state", state, self.agent.obs_dim)
        a = vector("action", action, self.agent.act_dim)
        ns = vector("next_state", next_state, self.agent.obs_dim)
        if np.any(a < self._low) or np.any(a > self._high):
            raise TransitionRejected("action is outside the action bounds")
        try:
            r = float(reward)
        except (TypeError, ValueError):
            raise TransitionRejected(f"reward {reward!r:.40} is not a number") from None
        if not math.isfinite(r):
            raise TransitionRejected("reward is NaN or inf")
        if abs(r) > self.max_abs_reward:
            raise TransitionRejected(f"reward {r:g} is outside [-{self.max_abs_reward:g}, {self.max_abs_reward:g}]")
        return s, a, r, ns

    def add_transition(self, source: int, seq: int, episode: int, state, action, reward: float, next_state,
                       terminated: bool, truncated: bool, success: bool,
                       step: Optional[int] = None) -> Optional[EpisodeRecord]:
        """Validate and store one transition; returns the EpisodeRecord when it ends an episode.

        Raises TransitionRejected (counted in `rejected`) and stores nothing when invalid.
        """
        try:
            s, a, r, ns = self.validate(source, seq, state, action, reward, next_state, episode, step)
        except TransitionRejected as e:
            self.rejected[str(e).split(" ")[0]] += 1
            raise
        if self.is_bridge_restart(source, seq):
            # The bridge begins anew: its half-finished episode will never be completed.
            self.bridge_restarts += 1
            self.next_seq[source] = 0
            self._open.pop(source, None)
            self._last_position.pop(source, None)
            self._jumps.pop(source, None)
        elif self.undoes_jump(source, seq):
            # The stream goes on where it was before the jump: the jump was spurious (forged or
            # corrupt). Its one transition stays stored; the expectations before it come back.
            jumps = self._jumps[source]
            index = [jump[0] for jump in jumps].index(seq)
            origin, _, last, open_episode = jumps[index]
            self.seq_gaps -= sum(jump[1] for jump in jumps[index:])  # it and every later jump
            self.seq_jumps_undone += len(jumps) - index
            del jumps[index:]
            self.next_seq[source] = origin
            if last is None:
                self._last_position.pop(source, None)
            else:
                self._last_position[source] = last
            if open_episode is None:
                self._open.pop(source, None)
            else:
                self._open[source] = open_episode
        if seq > self.next_seq[source]:
            jumps = self._jumps.setdefault(source, [])
            jumps.append((self.next_seq[source], seq - self.next_seq[source], self._last_position.get(source),
                          self._open.get(source)))
            del jumps[:-MAX_PENDING_JUMPS]
        if step is not None:
            self._last_position[source] = (int(episode), int(step))
        elif source in self._last_position:
            del self._last_position[source]
        if seq > self.next_seq[source]:
            self.seq_gaps += seq - self.next_seq[source]
        self.next_seq[source] = seq + 1
        ends_in_success = bool(terminated) and bool(success)
        insert = self.replay.add(s, a, self._critic_reward(r, ends_in_success), ns, bool(terminated), source=source)
        self.env_steps += 1
        self._step_times.append((time.monotonic(), self.env_steps))
        if self.phase == PRESAMPLE and self.schedule.phase(self.env_steps) == FINETUNE:
            self.agent.set_phase(FINETUNE)

        current = self._open.get(source)
        if current is None or current.episode != episode:
            current = self._open[source] = _OpenEpisode(episode)
        current.rewards.append(r)
        current.states.append(s)
        current.actions.append(a)
        current.inserts.append(insert)
        current.success |= bool(success)
        if terminated or truncated:
            return self._close_episode(source, current, bootstrap=None if terminated else ns,
                                       ends_in_success=ends_in_success)
        return None

    def _critic_reward(self, reward: float, ends_in_success: bool) -> float:
        """A reward in the critic's units; a success that ends the episode counts as that reward
        for ever after (absorbing_success), so the critic never learns to avoid succeeding."""
        scaled = reward * self.config.reward_scale
        if ends_in_success and self.config.absorbing_success:
            return scaled / (1.0 - self.config.gamma)
        return scaled

    def undoes_jump(self, source: int, seq: int) -> bool:
        """Whether `seq` is the one expected before a pending forward jump of this source."""
        return self._jump_at(source, seq) is not None

    def _jump_at(self, source: int, seq: int):
        return next((jump for jump in self._jumps.get(source, ()) if jump[0] == seq), None)

    @property
    def switch_step(self) -> Optional[int]:
        """The env step count at which fine-tuning began (T actually used), None while pre-sampling."""
        return None if self.phase == PRESAMPLE else self.schedule.presample_steps

    def end_presample(self) -> bool:
        """Switch to fine-tuning now (e.g. an adaptive criterion decided the critic is ready);
        the schedule records the T actually used. Returns False when already fine-tuning."""
        if self.phase != PRESAMPLE:
            return False
        self.schedule = PhaseSchedule(self.env_steps)
        self.agent.set_phase(FINETUNE)
        return True

    # ------------------------------------------------------------------ learning
    def train(self) -> dict[str, float]:
        """The critic (and, in finetune, actor) updates owed for one env step."""
        metrics = self.agent.train_after_env_step(self.replay)
        if metrics:
            self.last_metrics = metrics
            self._update_times.append((time.monotonic(), self.agent.critic_updates))
        return metrics

    def updates_owed(self) -> int:
        """Critic updates owed for the env steps stored so far: every step from the one that fills
        `learning_starts` on owes its phase's UTD ratio (what lockstep's train() does per step)."""
        cfg, n = self.config, self.env_steps
        start, switch = max(cfg.effective_learning_starts, 1), self.schedule.presample_steps
        presample = max(0, min(n, switch - 1) - start + 1)
        finetune = max(0, n - max(start, switch) + 1)
        return cfg.utd_ratio_in(True) * presample + cfg.utd_ratio_in(False) * finetune

    def update_due(self) -> bool:
        """Free running: whether one more update stays within the budget of updates_owed()."""
        return self.agent.critic_updates < self.updates_owed()

    def train_one_update(self) -> dict[str, float]:
        """A single update within the budget (free-running learners call this as fast as they can)."""
        if len(self.replay) < max(self.config.effective_learning_starts, 1) or not self.update_due():
            return {}
        batch = self.agent.sample_batch(self.replay)
        metrics = self.agent.update(batch)
        self.last_metrics = metrics
        self._update_times.append((time.monotonic(), self.agent.critic_updates))
        return metrics

    def actor_changed(self) -> bool:
        """Whether the actor was updated (or restored) since the last weights broadcast."""
        return (self.agent.actor_updates > self._actor_updates_published
                or self.agent.actor_restores > self._restores_published)

    def weights_due(self) -> bool:
        """New weights are due when the actor changed and `weights_every` steps have passed."""
        return self.actor_changed() and self.env_steps % self.weights_every == 0

    def mark_weights_published(self) -> int:
        """Record a weights broadcast; returns its (strictly increasing) version."""
        self.policy_version += 1
        self._actor_updates_published = self.agent.actor_updates
        self._restores_published = self.agent.actor_restores
        return self.policy_version

    def policy_meta(self, env_id: str = "") -> PolicyMeta:
        return PolicyMeta.for_actor(self.agent.policy, env_id=env_id, policy_version=self.policy_version)

    # ------------------------------------------------------------------ persistence
    def bookkeeping_state(self) -> dict:
        """Everything besides agent tensors and replay needed to resume, as plain JSON data."""
        return {
            "env_steps": self.env_steps, "next_seq": list(self.next_seq), "seq_gaps": self.seq_gaps,
            "switch_step": self.switch_step,  # the T used once fine-tuning began (end_presample may shorten it)
            "rejected": dict(self.rejected), "bridge_restarts": self.bridge_restarts,
            "policy_version": self.policy_version, "actor_updates_published": self._actor_updates_published,
            "episodes": [dataclasses.asdict(r) for r in self.episodes],
            "open_episodes": {str(k): {"episode": v.episode, "rewards": list(v.rewards),
                                       "states": [x.tolist() for x in v.states],
                                       "actions": [x.tolist() for x in v.actions], "success": v.success,
                                       "inserts": list(v.inserts)}
                              for k, v in self._open.items()},
            "last_position": {str(k): list(v) for k, v in self._last_position.items()},
            # Unconfirmed seq jumps (their open episode is not kept: after a resume an undone jump
            # starts a new episode record).
            "seq_jumps": {str(k): [[j[0], j[1], list(j[2]) if j[2] is not None else None] for j in v]
                          for k, v in self._jumps.items()},
            "seq_jumps_undone": self.seq_jumps_undone,
            "restores_published": self._restores_published,
            "guard": self.guard.state() if self.guard is not None else None,
        }

    def load_bookkeeping_state(self, state: dict) -> None:
        """Inverse of bookkeeping_state(); raises ValueError naming a bad field."""
        try:
            next_seq = [int(x) for x in state["next_seq"]]
            if len(next_seq) != self.num_sources:
                raise ValueError(f"next_seq has {len(next_seq)} bridges, this learner has {self.num_sources} "
                                 f"(num_bridges must not change across resume)")
            self.env_steps = int(state["env_steps"])
            if state.get("switch_step") is not None:
                self.schedule = PhaseSchedule(int(state["switch_step"]))
            self.next_seq = next_seq
            self.seq_gaps = int(state["seq_gaps"])
            self.rejected = collections.Counter({str(k): int(v) for k, v in state["rejected"].items()})
            self.bridge_restarts = int(state["bridge_restarts"])
            self.policy_version = int(state["policy_version"])
            self._actor_updates_published = int(state["actor_updates_published"])
            self.episodes = [EpisodeRecord(**r) for r in state["episodes"]]
            self._open = {int(k): _OpenEpisode(int(v["episode"]), [float(x) for x in v["rewards"]],
                                               [np.asarray(x, dtype=np.float32) for x in v["states"]],
                                               [np.asarray(x, dtype=np.float32) for x in v["actions"]],
                                               bool(v["success"]), [int(x) for x in v["inserts"]])
                          for k, v in state["open_episodes"].items()}
            self._last_position = {int(k): (int(v[0]), int(v[1])) for k, v in state["last_position"].items()}
            self._jumps = {int(k): [(int(j[0]), int(j[1]), None if j[2] is None else (int(j[2][0]), int(j[2][1])),
                                     None) for j in v] for k, v in (state.get("seq_jumps") or {}).items()}
            self.seq_jumps_undone = int(state.get("seq_jumps_undone", 0))
            self._restores_published = int(state["restores_published"])
            if self.guard is not None and state["guard"] is not None:
                self.guard.load_state(state["guard"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"learner bookkeeping state: bad or missing field: {e}") from None
        self._recent.clear()
        self._recent.extend(self.episodes[-self._recent.maxlen:])

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def _q_estimates(self, states: list, actions: list) -> np.ndarray:
        """Ensemble-mean Q of each (state, action), in one batched forward."""
        device = self.agent.device
        s = torch.as_tensor(np.stack(states), device=device)
        a = torch.as_tensor(np.stack(actions), device=device)
        return self.agent.critic(s, a).mean(dim=0).cpu().numpy()

    @torch.no_grad()
    def _close_episode(self, source: int, ep: _OpenEpisode, bootstrap: Optional[np.ndarray],
                       ends_in_success: bool) -> EpisodeRecord:
        gamma = self.config.gamma
        # Discounted return to go of what the episode collected, in the critic's units: stored
        # with each transition (the critic's Monte-Carlo lower bound reads it).
        observed = np.empty(len(ep.rewards))
        running = 0.0
        last = len(ep.rewards) - 1
        for i in range(last, -1, -1):
            running = self._critic_reward(ep.rewards[i], ends_in_success and i == last) + gamma * running
            observed[i] = running
        self.replay.set_mc_returns(ep.inserts, observed)
        # For calibration, a truncated episode bootstraps its tail with the critic.
        returns = observed
        if bootstrap is not None:
            obs = torch.as_tensor(bootstrap, device=self.agent.device).unsqueeze(0)
            tail = float(self._q_estimates([bootstrap], [self.agent.policy.mean_action(obs)[0].cpu().numpy()])[0])
            returns = observed + tail * gamma ** np.arange(len(observed), 0, -1)
        gap = float(np.mean(self._q_estimates(ep.states, ep.actions) - returns))
        record = EpisodeRecord(source=source, episode=ep.episode, env_steps=self.env_steps, length=len(ep.rewards),
                               episode_return=float(sum(ep.rewards)), success=ep.success, phase=self.phase,
                               q_calibration_gap=gap)
        self.episodes.append(record)
        self._recent.append(record)
        del self._open[source]
        self._judge(record)
        return record

    def _judge(self, record: EpisodeRecord) -> None:
        """The regression guard's verdict on a finished episode, carried out."""
        if self.guard is None:
            return
        verdict = self.guard.observe(record.phase, record.success, record.episode_return)
        if verdict.new_best:
            self.agent.remember_best_actor()
        elif verdict.restore:
            self.agent.restore_best_actor(self.config.guard_lr_backoff)
            self.guard_events.append(
                f"regression guard at env step {self.env_steps}: {verdict.reason}; restored the best actor so far "
                f"(restore {self.guard.restores}) and lowered the actor lr to {self.agent.actor_lr:.3g}")

    @staticmethod
    def _rate(samples: collections.deque) -> float:
        if len(samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def summary(self) -> dict[str, float]:
        """Numbers for TrainingStatus and the progress line."""
        recent = list(self._recent)
        updates_per_s, steps_per_s = self._rate(self._update_times), self._rate(self._step_times)
        return {
            "phase": self.phase,
            "env_steps": self.env_steps,
            "gradient_updates": self.agent.critic_updates,
            "actor_updates": self.agent.actor_updates,
            "policy_version": self.policy_version,
            "episodes": len(self.episodes),
            "success_rate": float(np.mean([r.success for r in recent])) if recent else 0.0,
            "last_episode_return": recent[-1].episode_return if recent else 0.0,
            "q_calibration_gap": float(np.mean([r.q_calibration_gap for r in recent])) if recent else 0.0,
            "critic_loss": self.last_metrics.get("critic_loss", 0.0),
            "actor_loss": self.last_metrics.get("actor_loss", 0.0),
            "alpha": self.agent.alpha,
            "q_mean": self.last_metrics.get("q_mean", 0.0),
            "replay_size": len(self.replay),
            "updates_per_second": updates_per_s,
            "env_steps_per_second": steps_per_s,
            "effective_utd": updates_per_s / steps_per_s if steps_per_s > 0 else 0.0,
            "seq_gaps": self.seq_gaps,
            "rejected_transitions": sum(self.rejected.values()),
            "bridge_restarts": self.bridge_restarts,
            "seq_jumps_undone": self.seq_jumps_undone,
            "guard_restores": self.agent.actor_restores,
            "actor_lr": self.agent.actor_lr,
            "guard_baseline_success": self.guard.baseline.success_rate if self.guard and self.guard.baseline else -1.0,
            "guard_window_success": (self.guard.last_window.success_rate
                                     if self.guard and self.guard.last_window else -1.0),
        }


# A fresh actor's initialisation is seeded apart from the critics' (which use config.seed).
FRESH_ACTOR_SEED_OFFSET = 10_000


def starting_actor(config: PorlConfig, pretrained: Optional[SquashedGaussianActor] = None,
                   spec=None) -> SquashedGaussianActor:
    """The actor a run fine-tunes: `pretrained` with its log-std reset to `actor_log_std_init`
    (unless none), or without one (SAC from scratch) a fresh actor of `actor_hidden` for the sizes
    and bounds of `spec` (an EnvSpec), seeded seed + FRESH_ACTOR_SEED_OFFSET."""
    if pretrained is not None:
        if config.actor_log_std_init is not None:
            pretrained.set_constant_log_std(config.actor_log_std_init)
        return pretrained
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + FRESH_ACTOR_SEED_OFFSET)
        return SquashedGaussianActor(spec.obs_dim, spec.act_dim, config.actor_hidden, spec.action_low,
                                     spec.action_high, log_std_min=config.actor_log_std_min,
                                     log_std_max=config.actor_log_std_max)


def build_learner(actor: SquashedGaussianActor, config: PorlConfig, replay_capacity: int,
                  num_sources: int = 1, weights_every_env_steps: int = 1,
                  max_abs_reward: float = 1e6) -> PorlLearner:
    """A PorlLearner around a (pre-trained or fresh) actor."""
    agent = PorlAgent(actor.obs_dim, actor.act_dim, actor.action_low.cpu().numpy(),
                      actor.action_high.cpu().numpy(), config, actor=actor)
    return PorlLearner(agent, replay_capacity, num_sources, weights_every_env_steps,
                       max_abs_reward=max_abs_reward)
