#!/usr/bin/env python3
"""Learner throughput: batched critic ensemble vs a per-member Python loop, the full PORL
step rate, and how close the learner gets to the device's dense-GEMM ceiling.

    python benchmarks/bench_learner.py                      # CPU (and CUDA when present)
    python benchmarks/bench_learner.py --device cpu --seconds 5 --n-critics 10 --batch 256

FLOPs are counted analytically: a linear layer costs 2*B*in*out per forward, and a
forward+backward (weight and input gradients) costs 3x the forward.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from porl_ros.core import PorlAgent, PorlConfig, ReplayBuffer  # noqa: E402
from porl_ros.core.replay import Batch  # noqa: E402

OBS_DIM, ACT_DIM = 39, 4  # Meta-World sizes


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn, seconds: float, device: torch.device, warmup: int = 3) -> float:
    """Calls per second of fn, measured for about `seconds` after a warm-up."""
    for _ in range(warmup):
        fn()
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n % 4 == 0:
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return n / elapsed


def gemm_ceiling(device: torch.device, seconds: float, size: int = 2048) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    return rate(lambda: torch.mm(a, b, out=out), seconds, device) * 2 * size**3


def mlp_flops(sizes: list[int], batch: int) -> float:
    return sum(2.0 * batch * i * o for i, o in zip(sizes[:-1], sizes[1:]))


def flops_per_critic_update(cfg: PorlConfig, batch: int) -> float:
    critic = [OBS_DIM + ACT_DIM, *cfg.critic_hidden, 1]
    actor = [OBS_DIM, *cfg.actor_hidden, 2 * ACT_DIM]
    return (3 * cfg.n_critics * mlp_flops(critic, batch)  # critic forward + backward
            + cfg.n_target_critics * mlp_flops(critic, batch)  # target subset forward
            + mlp_flops(actor, batch))  # next action


def flops_per_actor_update(cfg: PorlConfig, batch: int) -> float:
    critic = [OBS_DIM + ACT_DIM, *cfg.critic_hidden, 1]
    actor = [OBS_DIM, *cfg.actor_hidden, 2 * ACT_DIM]
    return 3 * mlp_flops(actor, batch) + 3 * cfg.n_critics * mlp_flops(critic, batch)


class LoopCritics:
    """The REDQ-style reference: N separate nn.Sequential critics updated in a Python loop,
    with the same math as PorlAgent.update's critic step (min over M random targets)."""

    def __init__(self, agent: PorlAgent, cfg: PorlConfig) -> None:
        def member() -> nn.Sequential:
            sizes = [OBS_DIM + ACT_DIM, *cfg.critic_hidden]
            layers: list[nn.Module] = []
            for i, o in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(i, o)] + ([nn.LayerNorm(o)] if cfg.critic_layer_norm else []) + [nn.ReLU()]
            return nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

        self.cfg, self.actor, self.device = cfg, agent.actor, agent.device
        self.critics = nn.ModuleList(member() for _ in range(cfg.n_critics)).to(agent.device)
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.opt = torch.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        self.gen = torch.Generator(device=agent.device).manual_seed(0)

    def update(self, b: Batch) -> None:
        cfg = self.cfg
        with torch.no_grad():
            na, nlogp = self.actor(b.next_obs, self.gen)
            idx = torch.randperm(cfg.n_critics, generator=self.gen, device=self.device)[: cfg.n_target_critics]
            nx = torch.cat([b.next_obs, na], -1)
            nq = torch.stack([self.targets[i](nx).squeeze(-1) for i in idx.tolist()]).min(0).values
            y = b.reward + cfg.gamma * (1 - b.terminated) * (nq - nlogp)
        x = torch.cat([b.obs, b.action], -1)
        loss = sum(((c(x).squeeze(-1) - y) ** 2).mean() for c in self.critics)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.targets.parameters()), list(self.critics.parameters()), cfg.tau)


def bench(device_name: str, args: argparse.Namespace) -> None:
    device = torch.device(device_name)
    cfg = PorlConfig(n_critics=args.n_critics, n_target_critics=min(2, args.n_critics),
                     critic_hidden=(args.hidden, args.hidden), actor_hidden=(args.hidden, args.hidden),
                     critic_layer_norm=not args.no_layer_norm, batch_size=args.batch, utd_ratio=args.utd,
                     presample_steps=0, device=device_name, seed=0)
    agent = PorlAgent(OBS_DIM, ACT_DIM, -np.ones(ACT_DIM), np.ones(ACT_DIM), cfg)
    if args.compile:
        t0 = time.perf_counter()
        agent.critic.forward = torch.compile(agent.critic.forward)
        agent.critic_target.forward = torch.compile(agent.critic_target.forward)
        print(f"  torch.compile of the critic-ensemble forwards enabled (compiled during warm-up)")
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(10_000, OBS_DIM, ACT_DIM)
    for _ in range(10_000):
        replay.add(rng.normal(size=OBS_DIM), rng.uniform(-1, 1, ACT_DIM), rng.normal(), rng.normal(size=OBS_DIM),
                   bool(rng.random() < 0.01))
    batches = [replay.sample(args.batch, device, rng) for _ in range(8)]
    it = iter(range(10**12))

    def batched_critic():
        agent.update(batches[next(it) % 8])

    loop = LoopCritics(agent, cfg)

    def loop_critic():
        loop.update(batches[next(it) % 8])

    def porl_env_step():
        agent.train_after_env_step(replay)

    def critic_only(fn):
        def run():
            agent.set_phase("presample")  # critic-only updates
            fn()
        return run

    def full_step():
        agent.set_phase("finetune")
        agent.config.actor_update_every = args.utd  # 1 actor update per U critic updates
        porl_env_step()

    # Warm up (and compile) everything once, then measure in interleaved rounds and keep
    # each figure's best round: on a shared machine this filters out other processes' load.
    for fn in (critic_only(batched_critic), loop_critic, full_step):
        for _ in range(20 if args.compile else 3):
            fn()
    best = {"ceiling": 0.0, "batched": 0.0, "loop": 0.0, "step": 0.0}
    per = args.seconds / args.rounds
    for _ in range(args.rounds):
        best["ceiling"] = max(best["ceiling"], gemm_ceiling(device, per))
        best["batched"] = max(best["batched"], rate(critic_only(batched_critic), per, device, 1))
        best["loop"] = max(best["loop"], rate(loop_critic, per, device, 1))
        best["step"] = max(best["step"], rate(full_step, per, device, 0))
    ceiling, r_batched, r_loop, r_step = best["ceiling"], best["batched"], best["loop"], best["step"]

    f_c = flops_per_critic_update(cfg, args.batch)
    f_a = flops_per_actor_update(cfg, args.batch)
    f_step = args.utd * f_c + f_a
    print(f"device {device_name}: N={cfg.n_critics} critics, hidden {args.hidden}x{args.hidden}, batch {args.batch}, "
          f"LayerNorm {cfg.critic_layer_norm}, UTD {args.utd}, threads {torch.get_num_threads()}")
    print(f"  GEMM ceiling (2048^3 fp32 mm):      {ceiling / 1e9:8.1f} GFLOP/s")
    print(f"  FLOPs per critic update:            {f_c / 1e9:8.3f} GFLOP")
    print(f"  batched ensemble critic updates/s:  {r_batched:8.1f}  ({r_batched * f_c / 1e9:6.1f} GFLOP/s, "
          f"{100 * r_batched * f_c / ceiling:5.1f}% of ceiling)")
    print(f"  per-member loop critic updates/s:   {r_loop:8.1f}  ({r_loop * f_c / 1e9:6.1f} GFLOP/s, "
          f"{100 * r_loop * f_c / ceiling:5.1f}% of ceiling)")
    print(f"  batched / loop:                     {r_batched / r_loop:8.2f}x")
    print(f"  full PORL step (U={args.utd} critic + 1 actor): {r_step:6.2f} env-steps/s "
          f"({r_step * f_step / 1e9:6.1f} GFLOP/s, {100 * r_step * f_step / ceiling:5.1f}% of ceiling)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="all", help="cpu, cuda, cuda:N or all (cpu + cuda when present)")
    p.add_argument("--n-critics", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--utd", type=int, default=16)
    p.add_argument("--seconds", type=float, default=6.0, help="measuring time per figure (all rounds)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best round is kept")
    p.add_argument("--no-layer-norm", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the network forwards")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [args.device] if args.device != "all" else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores")
    for d in devices:
        bench(d, args)


if __name__ == "__main__":
    main()
