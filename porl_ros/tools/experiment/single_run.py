"""One (variant, task, seed) run of the grid: the graph's fine-tuning loop in one process.

Each env step is `fine_tuning_step` (choose, explore, step, store, train), the loop the
graph's controller, sim bridge and learner run between them; the adaptive variant may end
the pre-sample stage early. Every `eval_every` steps (and at step 0) the actor is evaluated:
one row of COLUMNS.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

import numpy as np

from .settings import VARIANTS, Experiment

COLUMNS = ["variant", "task", "seed", "env_steps", "phase", "success_rate", "mean_return", "std_return",
           "mean_length", "q_calibration_gap", "critic_loss", "q_mean", "alpha", "presample_steps",
           "train_success_rate", "explore_fraction", "actor_updates", "wall_s"]


def task_slug(task: str) -> str:
    return task.replace("/", "_")


def pretrained_actor(experiment: Experiment, task: str, seed: int, cache_dir: str):
    """The BC actor for (task, seed), trained once and cached under cache_dir."""
    from porl_ros.core.checkpoint import PolicyMeta, load_actor, save_actor

    directory = os.path.join(cache_dir, f"{task_slug(task)}_s{seed}")
    if os.path.exists(os.path.join(directory, "meta.json")):
        return load_actor(directory)[0]
    from porl_ros.core.bc import BCConfig, train_bc
    from porl_ros.envs.registry import make_env
    from porl_ros.tools.pretrain import collect_demonstrations

    bc = experiment.pretrain
    env = make_env(task, max_episode_steps=experiment.episodes.max_episode_steps)
    try:
        # The demonstrations and BC of porl-ros run --seed seed (porl-ros pretrain --seed seed).
        demos = collect_demonstrations(env, bc.demos, expert_noise=bc.expert_noise,
                                       suboptimal_prob=bc.suboptimal_prob, keep="success", seed=seed)
        if demos.kept == 0:
            raise RuntimeError(f"{task}: the noisy expert succeeded in none of {demos.attempts} attempts")
        actor, stats = train_bc(demos.observations, demos.actions, env.spec.action_low, env.spec.action_high,
                                BCConfig(steps=bc.bc_steps, hidden=experiment.learner.actor_hidden, seed=seed))
    finally:
        env.close()
    save_actor(directory, actor, PolicyMeta.for_actor(actor, env_id=task, extra={
        "source": "porl_ros.tools.experiment", "demos": demos.kept, "attempts": demos.attempts,
        "seed": seed, "bc_steps": bc.bc_steps, "bc_dataset_mse": stats["dataset_mse"]}))
    return actor


# Called after every env step with (learner, executed action, explored?): a hook for tests.
RunObserver = Callable[[Any, np.ndarray, bool], None]


def run_single(experiment: Experiment, variant_name: str, task: str, seed: int, bc_dir: str,
               observer: Optional[RunObserver] = None, log=None) -> list[dict[str, Any]]:
    """One (variant, task, seed) run; returns its evaluation rows."""
    import torch

    from porl_ros.core.exploration import ActionChooser
    from porl_ros.core.learner import build_learner, starting_actor
    from porl_ros.core.phases import PRESAMPLE
    from porl_ros.core.rollout import EnvStepper, fine_tuning_step, open_env
    from porl_ros.envs.registry import make_env
    from porl_ros.tools.evaluate import actor_policy, evaluate_policy

    grid = experiment.grid
    torch.set_num_threads(grid.torch_threads)
    variant = VARIANTS[variant_name]
    config, exploration = experiment.run_config(variant, seed)
    start = time.perf_counter()
    stepper = EnvStepper(open_env(task, experiment.episodes, seed), seed)
    eval_env = make_env(task, max_episode_steps=experiment.episodes.max_episode_steps)
    rows: list[dict[str, Any]] = []
    try:
        pretrained = pretrained_actor(experiment, task, seed, bc_dir) if variant.pretrained else None
        learner = build_learner(starting_actor(config, pretrained, stepper.spec), config,
                                replay_capacity=grid.total_steps)
        agent = learner.agent
        chooser = ActionChooser(exploration, stepper.spec.action_low, stepper.spec.action_high, seed=seed)
        action_gen = torch.Generator()
        action_gen.manual_seed(seed)

        def policy(observation: np.ndarray, deterministic: bool) -> np.ndarray:  # the policy server's answer
            return agent.policy.act(observation, deterministic=deterministic, generator=action_gen)

        criterion = experiment.adaptive.criterion() if variant.adaptive else None
        interval: dict[str, list[float]] = {"critic_loss": [], "q_mean": []}
        seen = 0  # training episodes already summarised in a row

        def evaluate_now() -> None:
            nonlocal seen
            result = evaluate_policy(eval_env, actor_policy(agent.policy, deterministic=True), grid.eval_episodes,
                                     grid.eval_seed + seed)
            switch = learner.switch_step if variant.adaptive else config.presample_steps
            recent = learner.episodes[seen:]
            rows.append({
                "variant": variant_name, "task": task, "seed": seed, "env_steps": learner.env_steps,
                "phase": learner.phase, "success_rate": result.success_rate,
                "mean_return": round(result.mean_return, 3), "std_return": round(result.std_return, 3),
                "mean_length": result.mean_length,
                # over the training episodes since the last evaluation (the learner's own 20-episode
                # window lags far behind a critic that is still learning)
                "q_calibration_gap": round(float(np.mean([e.q_calibration_gap for e in recent])), 4)
                if recent else float("nan"),
                "critic_loss": round(learner.last_metrics.get("critic_loss", float("nan")), 5),
                "q_mean": round(learner.last_metrics.get("q_mean", float("nan")), 4),
                "alpha": round(agent.alpha, 6), "presample_steps": -1 if switch is None else switch,
                "train_success_rate": learner.summary()["success_rate"],
                "explore_fraction": round(chooser.exploratory_actions / max(learner.env_steps, 1), 4),
                "actor_updates": agent.actor_updates, "wall_s": round(time.perf_counter() - start, 2)})
            seen = len(learner.episodes)
            if log is not None:
                r = rows[-1]
                outcomes = "".join("1" if e.success else "0" for e in result.per_episode)  # per eval episode
                log(f"{variant_name} {task} s{seed} step {r['env_steps']}: success {r['success_rate']:.2f} "
                    f"return {r['mean_return']:.0f} phase {r['phase']} alpha {r['alpha']:.4f} "
                    f"q_gap {r['q_calibration_gap']} episodes {outcomes} "
                    f"({r['wall_s']:.0f} s)")

        evaluate_now()
        for _ in range(grid.total_steps):
            record, explored, metrics = fine_tuning_step(learner, chooser, stepper, policy)
            if criterion is not None and learner.phase == PRESAMPLE:
                for k in interval:
                    if k in metrics:
                        interval[k].append(metrics[k])
                if learner.env_steps % experiment.adaptive.adaptive_check_every == 0 and interval["critic_loss"]:
                    signals = {k: float(np.mean(v)) for k, v in interval.items()}
                    interval = {k: [] for k in interval}
                    if criterion.observe(learner.env_steps, signals) and learner.end_presample() and log:
                        log(f"{variant_name} {task} s{seed}: adaptive pre-sample ends at T={learner.switch_step}")
            if observer is not None:
                observer(learner, record.action, explored)
            if learner.env_steps % grid.eval_every == 0:
                evaluate_now()
        if learner.env_steps % grid.eval_every != 0:
            evaluate_now()
    finally:
        stepper.close()
        eval_env.close()
    return rows
