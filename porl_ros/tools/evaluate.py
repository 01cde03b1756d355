"""Evaluate a policy: success rate, return and episode length over K seeded episodes.

Library::

    result = evaluate_policy(env, policy_fn, episodes=10, seed=0)   # policy_fn: obs -> action
    result.success_rate, result.mean_return, result.std_return, result.mean_length
    result.per_episode  # [EpisodeResult(seed, ret, length, success), ...]

Episode ``i`` is reset with seed ``seed + i``, so two policies evaluated with the same
``seed`` face the same task variations. An episode ends when the back-end reports
``terminated`` or ``truncated`` (the back-end owns the time limit).

CLI (exit code 0 on success, 2 on a bad checkpoint, env id or argument)::

    python -m porl_ros.tools.evaluate CHECKPOINT_DIR [--env metaworld/push-v3]
        [--episodes 20] [--seed 1000] [--deterministic | --stochastic]
        [--max-episode-steps N] [--json results.json]

``--env`` defaults to the env id stored in the checkpoint. The checkpoint must match
the environment's observation / action sizes and bounds, else it is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from porl_ros.envs.base import EnvBackend

PolicyFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_EVAL_SEED = 1000  # away from the seeds pretrain uses for demonstrations (0, 1, ...)
# A fine-tuning run with seed s is evaluated on episodes seeded RUN_EVAL_SEED + s, RUN_EVAL_SEED + s + 1, ...
# (porl-ros run and porl-ros experiment alike): far from its demonstrations' and training episodes' seeds.
RUN_EVAL_SEED = 10_000


@dataclass
class EpisodeResult:
    seed: int
    ret: float
    length: int
    success: bool


@dataclass
class EvalResult:
    success_rate: float
    mean_return: float
    std_return: float
    mean_length: float
    per_episode: list[EpisodeResult] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return len(self.per_episode)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["episodes"] = self.episodes
        return d


def run_episode(env: EnvBackend, policy_fn: PolicyFn, seed: Optional[int]) -> EpisodeResult:
    """One episode from ``env.reset(seed)`` until terminated or truncated."""
    obs = env.reset(seed=seed)
    ret, length, success = 0.0, 0, False
    limit = env.spec.max_episode_steps
    while True:
        res = env.step(np.asarray(policy_fn(obs), dtype=np.float32))
        ret += res.reward
        length += 1
        success = success or res.success
        obs = res.observation
        if res.terminated or res.truncated:
            break
        if length >= 10 * limit:  # a back-end that never ends its episodes
            raise RuntimeError(f"{env.spec.env_id}: episode did not end after {length} steps "
                               f"(max_episode_steps={limit})")
    return EpisodeResult(seed=-1 if seed is None else int(seed), ret=float(ret),
                         length=length, success=bool(success))


def evaluate_policy(env: EnvBackend, policy_fn: PolicyFn, episodes: int, seed: int = 0,
                    progress: Optional[Callable[[EpisodeResult], None]] = None) -> EvalResult:
    """Run `episodes` episodes (seeds seed, seed+1, ...) and summarise them.

    An episode counts as a success if any of its steps reported success.
    """
    if int(episodes) < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    results = []
    for i in range(int(episodes)):
        r = run_episode(env, policy_fn, seed + i)
        results.append(r)
        if progress is not None:
            progress(r)
    rets = np.array([r.ret for r in results], dtype=np.float64)
    return EvalResult(
        success_rate=float(np.mean([r.success for r in results])),
        mean_return=float(rets.mean()),
        std_return=float(rets.std()),
        mean_length=float(np.mean([r.length for r in results])),
        per_episode=results,
    )


def random_policy(env: EnvBackend, seed: int = 0) -> PolicyFn:
    """Uniform random actions within the env's bounds (a baseline)."""
    rng = np.random.default_rng(seed)
    low, high = env.spec.action_low, env.spec.action_high
    return lambda obs: rng.uniform(low, high).astype(np.float32)


def expert_policy(env: EnvBackend) -> PolicyFn:
    """The back-end's scripted expert (raises if it has none)."""
    if not env.has_expert:
        raise ValueError(f"{env.spec.env_id} has no scripted expert")
    return env.expert_action


def actor_policy(actor: Any, deterministic: bool = True, seed: int = 0) -> PolicyFn:
    """Wrap a SquashedGaussianActor as obs -> action (seeded noise when stochastic)."""
    import torch
    gen = None
    if not deterministic:
        gen = torch.Generator(device=actor.obs_mean.device)
        gen.manual_seed(int(seed))
    return lambda obs: actor.act(obs, deterministic=deterministic, generator=gen)


def load_policy_for_env(checkpoint: str, env: EnvBackend, device: str = "cpu"):
    """load_actor with the env's sizes and bounds as `expect` (CheckpointError on mismatch)."""
    from porl_ros.core.checkpoint import load_actor
    spec = env.spec
    expect = {"obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
              "action_low": [float(x) for x in spec.action_low],
              "action_high": [float(x) for x in spec.action_high]}
    return load_actor(checkpoint, device=device, expect=expect)


def format_result(result: EvalResult, label: str = "") -> str:
    head = f"{label}: " if label else ""
    return (f"{head}success {result.success_rate:.2f} over {result.episodes} episodes, "
            f"return {result.mean_return:.1f} +- {result.std_return:.1f}, "
            f"length {result.mean_length:.1f}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="porl_ros.tools.evaluate",
                                description="Evaluate a saved policy checkpoint.")
    p.add_argument("checkpoint", help="checkpoint directory (actor.safetensors + meta.json)")
    p.add_argument("--env", default=None,
                   help="env id, e.g. metaworld/push-v3 (default: the checkpoint's env_id)")
    p.add_argument("--episodes", type=int, default=20, help="episodes to run (default 20)")
    p.add_argument("--seed", type=int, default=DEFAULT_EVAL_SEED,
                   help=f"seed of the first episode; episode i uses seed+i "
                        f"(default {DEFAULT_EVAL_SEED})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--deterministic", dest="deterministic", action="store_true",
                      default=True, help="act with the policy's mean action (default)")
    mode.add_argument("--stochastic", dest="deterministic", action="store_false",
                      help="sample actions from the policy")
    p.add_argument("--max-episode-steps", type=int, default=None,
                   help="episode length (default: the environment's)")
    p.add_argument("--device", default="cpu", help="torch device for the policy (default cpu)")
    p.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                   help="also write the results as JSON to PATH")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _error(msg: str) -> int:
    print(f"evaluate: error: {msg}", file=sys.stderr)
    return 2


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        return _error(f"--episodes must be >= 1, got {args.episodes}")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        return _error(f"--max-episode-steps must be >= 1, got {args.max_episode_steps}")
    from porl_ros.core.checkpoint import CheckpointError, load_actor
    from porl_ros.envs.registry import make_env

    if not os.path.isdir(args.checkpoint):
        return _error(f"checkpoint directory {args.checkpoint!r} does not exist")
    env_id = args.env
    try:
        if env_id is None:
            _, meta = load_actor(args.checkpoint)
            env_id = meta.env_id
            if not env_id:
                return _error("the checkpoint stores no env_id; pass --env")
        env = make_env(env_id, max_episode_steps=args.max_episode_steps)
    except CheckpointError as exc:
        return _error(str(exc))
    except (ValueError, TypeError, ImportError) as exc:
        return _error(f"cannot build environment {env_id!r}: {exc}")
    try:
        try:
            actor, meta = load_policy_for_env(args.checkpoint, env, device=args.device)
        except CheckpointError as exc:
            return _error(f"checkpoint does not fit {env_id}: {exc}")
        policy = actor_policy(actor, deterministic=args.deterministic, seed=args.seed)
        bar = None
        if not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=args.episodes, desc=f"evaluate {env_id}", unit="ep")

        def progress(r: EpisodeResult) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success=r.success, ret=f"{r.ret:.0f}")

        start = time.perf_counter()
        result = evaluate_policy(env, policy, args.episodes, args.seed, progress=progress)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
    finally:
        env.close()
    mode = "deterministic" if args.deterministic else "stochastic"
    print(format_result(result, f"{env_id} ({mode}, seeds {args.seed}..{args.seed + args.episodes - 1})"))
    if args.json_path:
        out = result.to_dict()
        out.update({"env_id": env_id, "checkpoint": os.path.abspath(args.checkpoint),
                    "deterministic": args.deterministic, "seed": args.seed,
                    "policy_version": meta.policy_version, "seconds": seconds})
        directory = os.path.dirname(os.path.abspath(args.json_path))
        os.makedirs(directory, exist_ok=True)
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
