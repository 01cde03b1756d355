"""Reproduce PORL's claims on the embedded tasks: a grid of variants x tasks x seeds.

    porl-ros experiment --tasks metaworld/push-v3 metaworld/reach-v3 --seeds 0 1 2 \\
        --out runs/experiment

Every run drives the same learner code as the ROS graph (``build_learner`` ->
``PorlLearner`` -> ``PorlAgent``), the same epsilon-greedy (``EpsilonGreedy`` with
per-stage ``StagedEpsilon``) and the same env back-ends (``make_env``), in-process and
without ROS so a grid fits on a small CPU. Each env step is what the graph does:
the exploration controller's action choice (mean action in pre-sample, a sampled one in
fine-tune, then epsilon-greedy), ``add_transition`` then ``train()`` (UTD updates).

Variants (``--variants``):

* ``porl``      pre-trained (BC) actor, pre-sample T steps with epsilon-greedy, actor frozen, then SAC;
* ``t0``        pre-trained actor, T = 0: a random critic meets the actor at once;
* ``eps0``      PORL with epsilon = 0 in pre-sample (the frozen policy's own actions only);
* ``scratch``   SAC from scratch: a random actor, T = 0;
* ``adaptive``  PORL whose pre-sample stage ends when the critic has converged
                (``porl_ros.core.adaptive.PlateauCriterion``), between a minimum and a cap.

Every ``--eval-every`` env steps (and at step 0) the current actor is evaluated
deterministically on ``--eval-episodes`` seeded episodes (``evaluate_policy``, seeds
1000, 1001, ...: the same variations for every variant), giving one CSV row.
Pre-trained policies come from ``collect_demonstrations`` + ``train_bc``, cached in
``OUT/bc/<task>_s<seed>/`` so every variant of a seed starts from the same actor.

Outputs in ``--out``: ``results.csv`` (one row per evaluation), ``runs/*.csv`` (per run:
a finished run is skipped when the grid is restarted), ``curves.png`` (success and return
against env steps, mean and spread over seeds, one panel per task), ``table.md`` and
``settings.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

COLUMNS = ["variant", "task", "seed", "env_steps", "phase", "success_rate", "mean_return", "std_return",
           "mean_length", "q_calibration_gap", "critic_loss", "q_mean", "alpha", "presample_steps",
           "train_success_rate", "explore_fraction", "actor_updates", "wall_s"]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    pretrained: bool = True
    presample: bool = True  # False: T = 0
    epsilon: Optional[float] = None  # None: the grid's --presample-epsilon
    adaptive: bool = False


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("porl", "PORL: BC actor, pre-sample T with epsilon-greedy (actor frozen), then SAC"),
    Variant("t0", "BC actor, T = 0 (random critic, actor trained from step 1)", presample=False),
    Variant("eps0", "PORL with epsilon = 0 in pre-sample", epsilon=0.0),
    Variant("scratch", "SAC from scratch: random actor, T = 0", pretrained=False, presample=False),
    Variant("adaptive", "PORL, pre-sample ends when the critic has converged", adaptive=True),
)}


@dataclass
class Settings:
    """Everything a grid run depends on (written to settings.json).

    The defaults are the CPU grid published in docs/results.md (sized for a 2-core CPU).
    """

    tasks: list[str] = field(default_factory=lambda: ["metaworld/push-v3", "metaworld/reach-v3"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    total_steps: int = 3000
    presample_steps: int = 1000
    presample_epsilon: float = 0.3
    presample_policy_action: str = "mean"
    finetune_epsilon: float = 0.0
    episode_length: int = 200
    train_terminate_on_success: bool = False
    eval_every: int = 500
    eval_episodes: int = 5
    eval_seed: int = 1000
    # Learner (PorlConfig) settings.
    n_critics: int = 4
    critic_hidden: int = 128
    batch_size: int = 128
    utd_ratio: int = 2
    presample_utd_ratio: Optional[int] = 4  # critic updates per env step in pre-sample (None: utd_ratio)
    tau: float = 0.005
    init_alpha: float = 0.01
    target_entropy: Optional[float] = None
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    reward_scale: float = 0.1  # Meta-World pays 0..10 per step; Q ~ 1000 is slow to reach
    actor_log_std_init: Optional[float] = -1.0  # reset the BC actor's std before fine-tuning
    # Pre-training (BC).
    demos: int = 10
    bc_steps: int = 1000
    bc_hidden: int = 256
    expert_noise: float = 0.3
    suboptimal_prob: float = 0.1
    # Adaptive pre-sample length.
    adaptive_min: int = 300
    adaptive_max: int = 2000
    adaptive_check_every: int = 100
    adaptive_window: int = 3
    adaptive_rel_tol: float = 0.05
    adaptive_patience: int = 2
    torch_threads: int = 1
    device: str = "cpu"  # learner device; "auto" picks CUDA when there is one

    def validate(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
        if not self.tasks:
            raise ValueError("tasks: at least one task is needed")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds: need at least one seed >= 0, got {self.seeds}")
        for name in ("total_steps", "episode_length", "eval_every", "eval_episodes", "n_critics",
                     "critic_hidden", "batch_size", "utd_ratio", "demos", "bc_steps", "bc_hidden",
                     "adaptive_check_every", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.presample_steps <= self.total_steps:
            raise ValueError(f"presample_steps must be in [0, total_steps], got {self.presample_steps}")
        if "adaptive" in self.variants and not 0 <= self.adaptive_min <= self.adaptive_max <= self.total_steps:
            raise ValueError("adaptive_min <= adaptive_max <= total_steps must hold, got "
                             f"{self.adaptive_min}, {self.adaptive_max}, {self.total_steps}")
        if self.presample_policy_action not in ("mean", "sample"):
            raise ValueError(f"presample_policy_action must be 'mean' or 'sample', "
                             f"got {self.presample_policy_action!r}")
        if self.presample_utd_ratio is not None and self.presample_utd_ratio < self.utd_ratio:
            raise ValueError(f"presample_utd_ratio must be >= utd_ratio, got {self.presample_utd_ratio}")
        if not self.reward_scale > 0:
            raise ValueError(f"reward_scale must be > 0, got {self.reward_scale}")


def task_slug(task: str) -> str:
    return task.replace("/", "_")


# ---------------------------------------------------------------------------- pre-training
def pretrained_actor(settings: Settings, task: str, seed: int, cache_dir: str):
    """The BC actor for (task, seed), trained once and cached under cache_dir."""
    from porl_ros.core.checkpoint import PolicyMeta, load_actor, save_actor

    directory = os.path.join(cache_dir, f"{task_slug(task)}_s{seed}")
    if os.path.exists(os.path.join(directory, "meta.json")):
        actor, _ = load_actor(directory)
        return actor
    from porl_ros.core.bc import BCConfig, train_bc
    from porl_ros.envs.registry import make_env
    from porl_ros.tools.pretrain import collect_demonstrations

    env = make_env(task, max_episode_steps=settings.episode_length)
    try:
        # Demo episodes use seeds 100*seed + k: distinct per grid seed, far from eval seeds.
        demos = collect_demonstrations(env, settings.demos, expert_noise=settings.expert_noise,
                                       suboptimal_prob=settings.suboptimal_prob, keep="success",
                                       seed=100 * seed)
        if demos.kept == 0:
            raise RuntimeError(f"{task}: the noisy expert succeeded in none of {demos.attempts} attempts")
        actor, stats = train_bc(demos.observations, demos.actions, env.spec.action_low, env.spec.action_high,
                                BCConfig(steps=settings.bc_steps, hidden=(settings.bc_hidden,) * 2, seed=seed))
    finally:
        env.close()
    save_actor(directory, actor, PolicyMeta.for_actor(actor, env_id=task, extra={
        "source": "porl_ros.tools.experiment", "demos": demos.kept, "attempts": demos.attempts,
        "seed": seed, "bc_steps": settings.bc_steps, "bc_dataset_mse": stats["dataset_mse"]}))
    return actor


def set_log_std(actor, log_std: float) -> None:
    """Make the actor's std state-independent exp(log_std) (a BC actor's is often tiny)."""
    import torch
    lo, hi = actor.log_std_min, actor.log_std_max
    if not lo < log_std < hi:
        raise ValueError(f"actor_log_std_init must be in ({lo}, {hi}), got {log_std}")
    with torch.no_grad():
        actor.log_std.weight.zero_()
        actor.log_std.bias.fill_(math.atanh(2.0 * (log_std - lo) / (hi - lo) - 1.0))


# ---------------------------------------------------------------------------- one run
def learner_config(settings: Settings, variant: Variant, seed: int):
    from porl_ros.core.config import PorlConfig
    if variant.adaptive:
        presample = settings.adaptive_max  # the cap; the criterion ends it earlier
    else:
        presample = settings.presample_steps if variant.presample else 0
    epsilon = settings.presample_epsilon if variant.epsilon is None else variant.epsilon
    return PorlConfig(n_critics=settings.n_critics, critic_hidden=(settings.critic_hidden,) * 2,
                      actor_hidden=(settings.bc_hidden,) * 2, batch_size=settings.batch_size,
                      utd_ratio=settings.utd_ratio, presample_utd_ratio=settings.presample_utd_ratio,
                      init_alpha=settings.init_alpha,
                      target_entropy=settings.target_entropy, actor_lr=settings.actor_lr, tau=settings.tau,
                      critic_lr=settings.critic_lr, alpha_lr=settings.alpha_lr,
                      presample_steps=presample, presample_epsilon=epsilon,
                      finetune_epsilon=settings.finetune_epsilon, device=settings.device, seed=seed)


def make_actor(settings: Settings, variant: Variant, task: str, seed: int, bc_dir: str, env_spec):
    import torch

    from porl_ros.core.networks import SquashedGaussianActor
    if variant.pretrained:
        actor = pretrained_actor(settings, task, seed, bc_dir)
        if settings.actor_log_std_init is not None:
            set_log_std(actor, settings.actor_log_std_init)
        return actor
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10_000 + seed)
        return SquashedGaussianActor(env_spec.obs_dim, env_spec.act_dim, (settings.bc_hidden,) * 2,
                                     env_spec.action_low, env_spec.action_high)


class RunObserver:
    """Hook for tests: called after every env step with (learner, executed action, explored?)."""

    def __call__(self, learner, executed: np.ndarray, explored: bool) -> None:  # pragma: no cover
        pass


def run_single(settings: Settings, variant_name: str, task: str, seed: int, bc_dir: str,
               observer: Optional[RunObserver] = None, log=None) -> list[dict[str, Any]]:
    """One (variant, task, seed) run; returns its evaluation rows."""
    import torch

    from porl_ros.core.adaptive import PlateauCriterion
    from porl_ros.core.exploration import EpsilonGreedy, EpsilonSchedule, StagedEpsilon
    from porl_ros.core.learner import build_learner
    from porl_ros.core.phases import FINETUNE, PRESAMPLE
    from porl_ros.envs.registry import make_env
    from porl_ros.tools.evaluate import actor_policy, evaluate_policy

    torch.set_num_threads(settings.torch_threads)
    variant = VARIANTS[variant_name]
    start = time.perf_counter()
    env = make_env(task, max_episode_steps=settings.episode_length, seed=seed,
                   terminate_on_success=settings.train_terminate_on_success)
    eval_env = make_env(task, max_episode_steps=settings.episode_length)
    rows: list[dict[str, Any]] = []
    try:
        actor = make_actor(settings, variant, task, seed, bc_dir, env.spec)
        cfg = learner_config(settings, variant, seed)
        learner = build_learner(actor, cfg, replay_capacity=settings.total_steps)
        agent = learner.agent
        greedy = EpsilonGreedy(env.spec.action_low, env.spec.action_high, seed=seed)
        epsilon = StagedEpsilon(EpsilonSchedule(cfg.presample_epsilon), EpsilonSchedule(cfg.finetune_epsilon))
        action_gen = torch.Generator()
        action_gen.manual_seed(seed)
        criterion = PlateauCriterion(settings.adaptive_min, settings.adaptive_max, settings.adaptive_window,
                                     settings.adaptive_rel_tol, settings.adaptive_patience) if variant.adaptive else None
        chosen_t = cfg.presample_steps if not variant.adaptive else None
        steps_in_phase = {PRESAMPLE: 0, FINETUNE: 0}
        explored = 0
        interval: dict[str, list[float]] = {"critic_loss": [], "q_mean": []}

        n_seen = 0  # training episodes already summarised in a row

        def evaluate_now() -> None:
            nonlocal n_seen
            result = evaluate_policy(eval_env, actor_policy(agent.actor, deterministic=True),
                                     settings.eval_episodes, settings.eval_seed)
            summary = learner.summary()
            t_now = chosen_t if chosen_t is not None else (
                learner.env_steps if learner.phase == FINETUNE else -1)
            rows.append({
                "variant": variant_name, "task": task, "seed": seed, "env_steps": learner.env_steps,
                "phase": learner.phase, "success_rate": result.success_rate,
                "mean_return": round(result.mean_return, 3), "std_return": round(result.std_return, 3),
                "mean_length": result.mean_length,
                # over the training episodes since the last evaluation (the learner's own 20-episode
                # window lags far behind a critic that is still learning)
                "q_calibration_gap": round(float(np.mean([e.q_calibration_gap for e in learner.episodes[n_seen:]])), 4)
                if len(learner.episodes) > n_seen else float("nan"),
                "critic_loss": round(learner.last_metrics.get("critic_loss", float("nan")), 5),
                "q_mean": round(learner.last_metrics.get("q_mean", float("nan")), 4),
                "alpha": round(agent.alpha, 6), "presample_steps": t_now,
                "train_success_rate": summary["success_rate"],
                "explore_fraction": round(explored / max(learner.env_steps, 1), 4),
                "actor_updates": agent.actor_updates, "wall_s": round(time.perf_counter() - start, 2)})
            n_seen = len(learner.episodes)
            if log is not None:
                r = rows[-1]
                log(f"{variant_name} {task} s{seed} step {r['env_steps']}: success {r['success_rate']:.2f} "
                    f"return {r['mean_return']:.0f} phase {r['phase']} alpha {r['alpha']:.4f} "
                    f"q_gap {r['q_calibration_gap']} ({r['wall_s']:.0f} s)")

        evaluate_now()
        obs = env.reset(seed=seed)
        episode = 0
        for seq in range(settings.total_steps):
            phase = learner.phase
            deterministic = phase == PRESAMPLE and settings.presample_policy_action == "mean"
            policy_action = agent.actor.act(obs, deterministic=deterministic, generator=action_gen)
            eps = epsilon.value(phase, steps_in_phase[phase])
            steps_in_phase[phase] += 1
            executed, was_random = greedy(policy_action, eps)
            explored += int(was_random)
            res = env.step(executed)
            learner.add_transition(0, seq, episode, obs, executed, res.reward * settings.reward_scale,
                                   res.observation, res.terminated, res.truncated, res.success)
            metrics = learner.train()  # presample_utd_ratio updates in pre-sample, utd_ratio after
            if criterion is not None and learner.phase == PRESAMPLE:
                for k in interval:
                    if k in metrics:
                        interval[k].append(metrics[k])
                if learner.env_steps % settings.adaptive_check_every == 0 and interval["critic_loss"]:
                    signals = {k: float(np.mean(v)) for k, v in interval.items()}
                    interval = {k: [] for k in interval}
                    if criterion.observe(learner.env_steps, signals):
                        learner.end_presample()
                        chosen_t = learner.env_steps
                        if log is not None:
                            log(f"{variant_name} {task} s{seed}: adaptive pre-sample ends at T={chosen_t}")
            if criterion is not None and chosen_t is None and learner.phase == FINETUNE:
                chosen_t = learner.env_steps  # the learner's own switch at the cap
            if observer is not None:
                observer(learner, executed, was_random)
            if res.terminated or res.truncated:
                episode += 1
                obs = env.reset()
            else:
                obs = res.observation
            if learner.env_steps % settings.eval_every == 0:
                evaluate_now()
        if learner.env_steps % settings.eval_every != 0:
            evaluate_now()
    finally:
        env.close()
        eval_env.close()
    return rows


# ---------------------------------------------------------------------------- grid
def run_file(out: str, variant: str, task: str, seed: int) -> str:
    return os.path.join(out, "runs", f"{variant}__{task_slug(task)}__s{seed}.csv")


def write_rows(path: str, rows: list[dict[str, Any]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_rows(path: str) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("seed", "env_steps", "presample_steps", "actor_updates"):
            r[k] = int(float(r[k]))
        for k in ("success_rate", "mean_return", "std_return", "mean_length", "q_calibration_gap", "critic_loss",
                  "q_mean", "alpha", "train_success_rate", "explore_fraction", "wall_s"):
            r[k] = float(r[k])
    return rows


def _worker(args: tuple) -> tuple[str, str, int, float]:
    settings_dict, variant, task, seed, out = args
    settings = Settings(**settings_dict)
    t0 = time.perf_counter()
    log_path = os.path.join(out, "runs", f"{variant}__{task_slug(task)}__s{seed}.log")
    with open(log_path, "w", encoding="utf-8") as log_file:
        def log(msg: str) -> None:
            log_file.write(msg + "\n")
            log_file.flush()
        rows = run_single(settings, variant, task, seed, os.path.join(out, "bc"), log=log)
    write_rows(run_file(out, variant, task, seed), rows)
    return variant, task, seed, time.perf_counter() - t0


def _pretrain_worker(args: tuple) -> tuple[str, int]:
    settings_dict, task, seed, out = args
    import torch
    settings = Settings(**settings_dict)
    torch.set_num_threads(settings.torch_threads)
    pretrained_actor(settings, task, seed, os.path.join(out, "bc"))
    return task, seed


def run_grid(settings: Settings, out: str, jobs: int = 1, say=print) -> list[dict[str, Any]]:
    """Run every (variant, task, seed) not already finished in `out`; write all outputs."""
    settings.validate()
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    os.makedirs(os.path.join(out, "bc"), exist_ok=True)
    with open(os.path.join(out, "settings.json"), "w", encoding="utf-8") as f:
        json.dump({"settings": asdict(settings), "host": platform.node(), "cpu_count": os.cpu_count(),
                   "platform": platform.platform()}, f, indent=2)
    sd = asdict(settings)
    need_bc = sorted({(t, s) for v in settings.variants if VARIANTS[v].pretrained
                      for t in settings.tasks for s in settings.seeds})
    todo = [(sd, v, t, s, out) for t in settings.tasks for s in settings.seeds for v in settings.variants
            if not os.path.exists(run_file(out, v, t, s))]
    start = time.perf_counter()
    say(f"experiment: {len(todo)} runs to do ({len(settings.variants)} variants x {len(settings.tasks)} tasks x "
        f"{len(settings.seeds)} seeds), {jobs} job(s), output {out}")
    if jobs <= 1:
        for task, seed in need_bc:
            _pretrain_worker((sd, task, seed, out))
        for i, item in enumerate(todo, 1):
            v, t, s, sec = _worker(item)
            say(f"  [{i}/{len(todo)}] {v} {t} seed {s}: {sec:.0f} s")
    else:
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        with ctx.Pool(jobs) as pool:
            for task, seed in pool.imap_unordered(_pretrain_worker, [(sd, t, s, out) for t, s in need_bc]):
                say(f"  BC policy ready: {task} seed {seed}")
            for i, (v, t, s, sec) in enumerate(pool.imap_unordered(_worker, todo), 1):
                say(f"  [{i}/{len(todo)}] {v} {t} seed {s}: {sec:.0f} s")
    say(f"experiment: grid done in {time.perf_counter() - start:.0f} s")
    return render(out, settings)


def render(out: str, settings: Optional[Settings] = None) -> list[dict[str, Any]]:
    """Merge the per-run CSVs into results.csv and draw curves.png and table.md."""
    runs_dir = os.path.join(out, "runs")
    rows: list[dict[str, Any]] = []
    for name in sorted(os.listdir(runs_dir)):
        if name.endswith(".csv"):
            rows += read_rows(os.path.join(runs_dir, name))
    if not rows:
        raise RuntimeError(f"no finished runs under {runs_dir}")
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    rows.sort(key=lambda r: (tasks.index(r["task"]), variants.index(r["variant"]), r["seed"], r["env_steps"]))
    write_rows(os.path.join(out, "results.csv"), rows)
    plot_curves(rows, os.path.join(out, "curves.png"), tasks, variants)
    with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
        f.write(summary_table(rows, tasks, variants))
    return rows


def _curves(rows, task, variant, key):
    """(steps, [seeds x steps] values) for one task/variant; seeds cut to their common length."""
    per_seed: dict[int, dict[int, float]] = {}
    for r in rows:
        if r["task"] == task and r["variant"] == variant:
            per_seed.setdefault(r["seed"], {})[r["env_steps"]] = r[key]
    if not per_seed:
        return [], np.zeros((0, 0))
    steps = sorted(set.intersection(*(set(d) for d in per_seed.values())))
    return steps, np.array([[d[s] for s in steps] for d in per_seed.values()], dtype=np.float64)


def plot_curves(rows, path: str, tasks: list[str], variants: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(tasks), figsize=(5.2 * len(tasks), 6.4), squeeze=False, sharex="col")
    colors = {"porl": "tab:blue", "t0": "tab:red", "eps0": "tab:orange", "scratch": "tab:gray",
              "adaptive": "tab:green"}
    for col, task in enumerate(tasks):
        for row, (key, label) in enumerate((("success_rate", "success rate"), ("mean_return", "eval return"))):
            ax = axes[row][col]
            for v in variants:
                steps, vals = _curves(rows, task, v, key)
                if not steps:
                    continue
                mean, sd = vals.mean(0), vals.std(0)
                ax.plot(steps, mean, color=colors.get(v), label=f"{v} (n={vals.shape[0]})", lw=1.6)
                ax.fill_between(steps, mean - sd, mean + sd, color=colors.get(v), alpha=0.15, lw=0)
            ts = sorted({r["presample_steps"] for r in rows if r["task"] == task and r["variant"] == "porl"})
            for t in ts:
                if t > 0:
                    ax.axvline(t, color="tab:blue", ls=":", lw=1)
            if row == 0:
                ax.set_title(task)
                ax.set_ylim(-0.03, 1.03)
            else:
                ax.set_xlabel("env steps")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle("PORL ablations: mean +- std over seeds (dotted: PORL's T)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summary_table(rows, tasks: list[str], variants: list[str]) -> str:
    """Markdown: start / worst / final success, final return, chosen T, time per run."""
    lines = ["| task | variant | seeds | success at 0 | worst success (mean over seeds) | final success | "
             "mean success, last 3 evals | final return | T (pre-sample steps) | wall s / run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        for v in variants:
            steps, succ = _curves(rows, task, v, "success_rate")
            if not steps:
                continue
            _, ret = _curves(rows, task, v, "mean_return")
            mean = succ.mean(0)
            finals = succ[:, -1]
            ts = [r["presample_steps"] for r in rows if r["task"] == task and r["variant"] == v
                  and r["env_steps"] == steps[-1]]
            walls = [r["wall_s"] for r in rows if r["task"] == task and r["variant"] == v and r["env_steps"] == steps[-1]]
            t_text = f"{np.mean(ts):.0f}" + (f" ({', '.join(str(t) for t in ts)})" if len(set(ts)) > 1 else "")
            lines.append(
                f"| {task} | {v} | {succ.shape[0]} | {mean[0]:.2f} | {mean.min():.2f} (at {steps[int(mean.argmin())]}) | "
                f"{finals.mean():.2f} +- {finals.std():.2f} | {mean[-3:].mean():.2f} | "
                f"{ret[:, -1].mean():.0f} +- {ret[:, -1].std():.0f} | {t_text} | {np.mean(walls):.0f} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- CLI
def _optional(typ):
    """argparse type: a number, or 'none' for the field's off value."""
    def parse(text: str):
        return None if text.lower() == "none" else typ(text)
    parse.__name__ = typ.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(prog="porl-ros experiment", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/experiment", help="output directory")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes, 1 torch thread each)")
    p.add_argument("--render-only", action="store_true", help="only rebuild results.csv, curves.png, table.md")
    p.add_argument("--tasks", nargs="+", default=d.tasks, help="env ids")
    p.add_argument("--seeds", nargs="+", type=int, default=d.seeds, help="seeds")
    p.add_argument("--variants", nargs="+", default=d.variants, help=f"of: {', '.join(VARIANTS)}")
    for name, typ, help_text in (
            ("total_steps", int, "env steps per run"),
            ("presample_steps", int, "PORL's T"),
            ("presample_epsilon", float, "epsilon in pre-sample"),
            ("presample_policy_action", str, "'mean' or 'sample' policy action in pre-sample"),
            ("finetune_epsilon", float, "epsilon in fine-tune"),
            ("episode_length", int, "max episode steps"),
            ("eval_every", int, "evaluate every N env steps"),
            ("eval_episodes", int, "episodes per evaluation"),
            ("eval_seed", int, "first evaluation seed"),
            ("n_critics", int, "critic ensemble size"),
            ("critic_hidden", int, "critic hidden width (2 layers)"),
            ("batch_size", int, "batch size"),
            ("utd_ratio", int, "critic updates per env step"),
            ("presample_utd_ratio", _optional(int), "critic updates per env step in pre-sample ('none': utd_ratio)"),
            ("tau", float, "Polyak rate of the target critics"),
            ("init_alpha", float, "initial SAC temperature"),
            ("target_entropy", _optional(float), "SAC target entropy ('none': -act_dim)"),
            ("actor_lr", float, "actor learning rate"),
            ("critic_lr", float, "critic learning rate"),
            ("alpha_lr", float, "temperature learning rate"),
            ("reward_scale", float, "multiply env rewards by this before the learner sees them"),
            ("actor_log_std_init", _optional(float), "set the pre-trained actor's log-std to this constant ('none': keep)"),
            ("demos", int, "BC demonstrations"),
            ("bc_steps", int, "BC gradient steps"),
            ("bc_hidden", int, "actor hidden width (2 layers)"),
            ("expert_noise", float, "demonstrator noise"),
            ("suboptimal_prob", float, "demonstrator random-action probability"),
            ("adaptive_min", int, "adaptive T: minimum"),
            ("adaptive_max", int, "adaptive T: cap"),
            ("adaptive_check_every", int, "adaptive T: env steps per check"),
            ("adaptive_window", int, "adaptive T: checks per smoothing window"),
            ("adaptive_rel_tol", float, "adaptive T: relative-change threshold"),
            ("adaptive_patience", int, "adaptive T: consecutive flat checks"),
            ("torch_threads", int, "torch threads per run"),
            ("device", str, "learner device: cpu, cuda, cuda:N or auto")):
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=getattr(d, name), help=help_text)
    p.add_argument("--train-terminate-on-success", action="store_true",
                   help="end training episodes on success (no bootstrap past it)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    values = {k: v for k, v in vars(args).items() if k not in ("out", "jobs", "render_only")}
    settings = Settings(**values)
    try:
        settings.validate()
    except ValueError as exc:
        print(f"experiment: error: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"experiment: error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    if args.render_only:
        render(args.out, settings)
    else:
        run_grid(settings, args.out, jobs=args.jobs)
    print(open(os.path.join(args.out, "table.md"), encoding="utf-8").read())
    print(f"wrote {os.path.join(args.out, 'results.csv')}, curves.png, table.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
