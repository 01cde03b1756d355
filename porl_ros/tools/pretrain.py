"""Pre-train a policy by behaviour cloning from a (deliberately imperfect) scripted expert.

PORL starts from a pre-trained policy; this tool makes one. It

1. collects demonstrations from the back-end's scripted expert (Meta-World has one per
   task), made sub-optimal on purpose: Gaussian noise with std ``--expert-noise`` (in
   units of half the action range) is added to every expert action, and with probability
   ``--suboptimal-prob`` per step the expert's action is replaced by a uniformly random
   one. The *executed* (noisy) action is what gets recorded, as a real sub-optimal
   demonstrator's would be;
2. keeps either only the successful demonstrations (``--keep success``, the default: the
   usual practice for imitation on success-based tasks; attempts continue until
   ``--demos`` successful ones are in, up to ``--max-attempts``) or every attempt
   (``--keep all``);
3. trains a ``SquashedGaussianActor`` with ``porl_ros.core.bc.train_bc`` and writes it
   with ``porl_ros.core.checkpoint.save_actor`` (``actor.safetensors`` + ``meta.json``,
   whose ``extra`` records how the data was made);
4. optionally evaluates the result (``--eval-episodes``) on seeds the demonstrations did
   not use.

The defaults give a policy with headroom on ``metaworld/push-v3``: clearly better than
random, clearly below the expert (few demonstrations, short BC training), in about a
minute on a 2-core CPU.

    python -m porl_ros.tools.pretrain --env metaworld/push-v3 --out checkpoints/push_bc
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from porl_ros import graph
from porl_ros.core.settings import NON_NEGATIVE, POSITIVE, PROBABILITY, Settings, SettingError, add_options, \
    from_options, setting
from porl_ros.envs.base import EnvBackend


@dataclass
class PretrainSettings(Settings):
    """How the pre-trained (BC) policy is made: by this tool, `porl-ros run` without a checkpoint,
    and the experiment grid."""

    demos: int = setting(10, "Demonstrations to keep.", POSITIVE)
    expert_noise: float = setting(0.3, "Gaussian action-noise std of the scripted expert, in half action ranges.",
                                  NON_NEGATIVE)
    suboptimal_prob: float = setting(0.1, "Per-step probability of a uniformly random action instead of the "
                                          "expert's.", PROBABILITY)
    bc_steps: int = setting(1000, "Behaviour-cloning gradient steps.", POSITIVE)


@dataclass
class Demonstrations:
    observations: np.ndarray  # [N, obs_dim] float32
    actions: np.ndarray  # [N, act_dim] float32, as executed
    attempts: int = 0  # episodes run
    successes: int = 0  # of which succeeded
    kept: int = 0  # episodes whose transitions are in the arrays
    episode_lengths: list[int] = field(default_factory=list)  # of the kept episodes

    @property
    def transitions(self) -> int:
        return int(self.observations.shape[0])

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


def noisy_expert_action(env: EnvBackend, obs: np.ndarray, rng: np.random.Generator,
                        expert_noise: float, suboptimal_prob: float) -> np.ndarray:
    """The expert's action, degraded as described in the module docstring."""
    low, high = env.spec.action_low, env.spec.action_high
    if suboptimal_prob > 0 and rng.random() < suboptimal_prob:
        return rng.uniform(low, high).astype(np.float32)
    act = np.asarray(env.expert_action(obs), dtype=np.float32)
    if expert_noise > 0:
        act = act + rng.normal(0.0, expert_noise, size=act.shape) * (high - low) / 2
    return np.clip(act, low, high).astype(np.float32)


def collect_demonstrations(env: EnvBackend, demos: int, *, expert_noise: float = 0.0,
                           suboptimal_prob: float = 0.0, keep: str = "success",
                           seed: int = 0, max_attempts: Optional[int] = None,
                           progress: Optional[Callable[[bool, int], None]] = None,
                           ) -> Demonstrations:
    """Run the noisy expert until `demos` episodes are kept (see the module docstring).

    Episode k is reset with seed ``seed + k``. `progress(kept_this_one, length)` is
    called after each attempt.
    """
    if not env.has_expert:
        raise ValueError(f"{env.spec.env_id} has no scripted expert to collect "
                         "demonstrations from")
    if keep not in ("success", "all"):
        raise ValueError(f"keep must be 'success' or 'all', got {keep!r}")
    if demos < 1:
        raise ValueError(f"demos must be >= 1, got {demos}")
    if not 0.0 <= suboptimal_prob <= 1.0:
        raise ValueError(f"suboptimal_prob must be in [0, 1], got {suboptimal_prob}")
    if expert_noise < 0:
        raise ValueError(f"expert_noise must be >= 0, got {expert_noise}")
    if max_attempts is None:
        max_attempts = demos if keep == "all" else 5 * demos + 20
    rng = np.random.default_rng(seed)
    obs_parts: list[np.ndarray] = []
    act_parts: list[np.ndarray] = []
    out = Demonstrations(np.zeros((0, env.spec.obs_dim), np.float32),
                         np.zeros((0, env.spec.act_dim), np.float32))
    while out.kept < demos and out.attempts < max_attempts:
        obs = env.reset(seed=seed + out.attempts)
        ep_obs, ep_act, success = [], [], False
        while True:
            act = noisy_expert_action(env, obs, rng, expert_noise, suboptimal_prob)
            ep_obs.append(obs)
            ep_act.append(act)
            res = env.step(act)
            success = success or res.success
            obs = res.observation
            if res.terminated or res.truncated:
                break
        out.attempts += 1
        out.successes += int(success)
        keep_it = success or keep == "all"
        if keep_it:
            out.kept += 1
            out.episode_lengths.append(len(ep_obs))
            obs_parts.append(np.stack(ep_obs))
            act_parts.append(np.stack(ep_act))
        if progress is not None:
            progress(keep_it, len(ep_obs))
    if obs_parts:
        out.observations = np.concatenate(obs_parts).astype(np.float32)
        out.actions = np.concatenate(act_parts).astype(np.float32)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="porl_ros.tools.pretrain",
                                description="Collect noisy expert demonstrations and "
                                            "behaviour-clone a policy checkpoint.")
    p.add_argument("--env", default=graph.DEFAULT_ENV_ID, help=f"env id (default {graph.DEFAULT_ENV_ID})")
    p.add_argument("--out", default="checkpoints/bc", help="checkpoint directory to write")
    add_options(p, PretrainSettings, title="demonstrations and BC")
    p.add_argument("--keep", choices=("success", "all"), default="success",
                   help="keep only successful demonstrations (default) or all")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="give up collecting after this many episodes "
                        "(default 5*demos+20 with --keep success)")
    p.add_argument("--max-episode-steps", type=int, default=None,
                   help="episode length (default: the environment's)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of demonstrations (episode k uses seed+k) and BC (default 0)")
    from porl_ros.core.bc import BCConfig
    bc = BCConfig()
    p.add_argument("--batch-size", type=int, default=bc.batch_size, help=f"BC batch size (default {bc.batch_size})")
    p.add_argument("--lr", type=float, default=bc.lr, help=f"BC learning rate (default {bc.lr:g})")
    p.add_argument("--hidden", type=int, nargs="+", default=list(bc.hidden),
                   help=f"actor hidden sizes (default {' '.join(map(str, bc.hidden))})")
    p.add_argument("--device", default=bc.device, help=f"torch device for BC (default {bc.device})")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="evaluate the result on this many episodes (0: skip; default 10)")
    p.add_argument("--eval-seed", type=int, default=None,
                   help="first evaluation seed (default 1000, away from the demo seeds)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _error(msg: str) -> int:
    print(f"pretrain: error: {msg}", file=sys.stderr)
    return 2


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from_options(PretrainSettings, args)
    except SettingError as exc:
        return _error(str(exc))
    if args.batch_size < 1:
        return _error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.eval_episodes < 0:
        return _error(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        return _error(f"--out {args.out!r} exists and is not a directory")

    from tqdm import tqdm

    from porl_ros.core.bc import BCConfig, train_bc
    from porl_ros.core.checkpoint import PolicyMeta, save_actor
    from porl_ros.envs.registry import make_env
    from porl_ros.tools.evaluate import (DEFAULT_EVAL_SEED, actor_policy, evaluate_policy,
                                         format_result)

    try:
        bc_config = BCConfig(steps=args.bc_steps, batch_size=args.batch_size, lr=args.lr,
                             hidden=tuple(args.hidden), seed=args.seed, device=args.device)
    except ValueError as exc:
        return _error(str(exc))
    try:
        env = make_env(args.env, max_episode_steps=args.max_episode_steps)
    except (ValueError, TypeError, ImportError) as exc:
        return _error(f"cannot build environment {args.env!r}: {exc}")
    start = time.perf_counter()
    try:
        if not env.has_expert:
            return _error(f"{args.env} has no scripted expert to collect demonstrations from")
        bar = tqdm(total=args.demos, desc=f"demos {args.env}", unit="demo",
                   disable=args.quiet)

        def on_episode(kept: bool, length: int) -> None:
            if kept:
                bar.update(1)
            bar.set_postfix(last_len=length)

        demos = collect_demonstrations(env, args.demos, expert_noise=args.expert_noise,
                                       suboptimal_prob=args.suboptimal_prob, keep=args.keep,
                                       seed=args.seed, max_attempts=args.max_attempts,
                                       progress=on_episode)
        bar.close()
        collect_s = time.perf_counter() - start
        if demos.kept == 0:
            return _error(f"no demonstration kept after {demos.attempts} attempts "
                          f"(expert success {demos.success_rate:.2f}); lower --expert-noise / "
                          "--suboptimal-prob or use --keep all")
        if demos.kept < args.demos:
            print(f"pretrain: warning: only {demos.kept} of {args.demos} demonstrations kept "
                  f"after {demos.attempts} attempts", file=sys.stderr)

        bc_bar = tqdm(total=bc_config.steps, desc="behaviour cloning", unit="step",
                      disable=args.quiet)

        def on_bc(step: int, total: int, loss: float) -> None:
            bc_bar.update(step - bc_bar.n)
            bc_bar.set_postfix(loss=f"{loss:.3f}")

        actor, stats = train_bc(demos.observations, demos.actions, env.spec.action_low,
                                env.spec.action_high, bc_config, progress=on_bc)
        bc_bar.close()
        meta = PolicyMeta.for_actor(actor, env_id=env.spec.env_id, extra={
            "source": "porl_ros.tools.pretrain",
            "demos": demos.kept, "attempts": demos.attempts,
            "expert_success_rate": demos.success_rate, "transitions": demos.transitions,
            "expert_noise": args.expert_noise, "suboptimal_prob": args.suboptimal_prob,
            "keep": args.keep, "seed": args.seed, "bc_steps": args.bc_steps,
            "bc_final_loss": stats["loss"], "bc_dataset_mse": stats["dataset_mse"],
            "max_episode_steps": env.spec.max_episode_steps,
        })
        save_actor(args.out, actor, meta)

        eval_result = None
        if args.eval_episodes > 0:
            eval_seed = DEFAULT_EVAL_SEED if args.eval_seed is None else args.eval_seed
            ev_bar = tqdm(total=args.eval_episodes, desc="evaluate", unit="ep",
                          disable=args.quiet)
            eval_result = evaluate_policy(env, actor_policy(actor, deterministic=True),
                                          args.eval_episodes, eval_seed,
                                          progress=lambda r: ev_bar.update(1))
            ev_bar.close()
    finally:
        env.close()

    total_s = time.perf_counter() - start
    print(f"pretrain summary ({args.env})")
    print(f"  demonstrations kept : {demos.kept} of {demos.attempts} attempts "
          f"(keep={args.keep}, noise={args.expert_noise}, "
          f"suboptimal_prob={args.suboptimal_prob})")
    print(f"  expert success rate : {demos.success_rate:.2f} during collection")
    print(f"  transitions         : {demos.transitions} (collected in {collect_s:.1f} s)")
    print(f"  BC final loss       : {stats['loss']:.4f} (dataset MSE {stats['dataset_mse']:.4f}, "
          f"{args.bc_steps} steps in {stats['seconds']:.1f} s)")
    if eval_result is not None:
        print(f"  BC policy           : {format_result(eval_result)}")
    print(f"  checkpoint          : {os.path.abspath(args.out)}")
    print(f"  total time          : {total_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
