#!/usr/bin/env python3
"""Learner throughput: batched critic ensemble vs a per-member Python loop, the full PORL
step rate of each learner path side by side (per-member loop, eager agent, fused block, and on
CUDA the fused block captured as a CUDA graph), and how close each gets to the device's
dense-GEMM ceiling.

    python benchmarks/bench_learner.py                      # CPU (and CUDA when present)
    python benchmarks/bench_learner.py --device cpu --seconds 5 --n-critics 10 --batch 256
    python benchmarks/bench_learner.py --device cuda --precision tf32 bf16   # + reduced precision rows

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
from porl_ros.core.fused import WARMUP_BLOCKS, FusedUpdater  # noqa: E402
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
    with the same math as PorlAgent's critic step (min over M random targets) and an actor
    step on the mean of the members' Q, evaluated one member at a time."""

    def __init__(self, agent: PorlAgent, cfg: PorlConfig) -> None:
        def member() -> nn.Sequential:
            sizes = [OBS_DIM + ACT_DIM, *cfg.critic_hidden]
            layers: list[nn.Module] = []
            for i, o in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(i, o)] + ([nn.LayerNorm(o)] if cfg.critic_layer_norm else []) + [nn.ReLU()]
            return nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

        self.cfg, self.device = cfg, agent.device
        self.actor = copy.deepcopy(agent.actor)
        self.critics = nn.ModuleList(member() for _ in range(cfg.n_critics)).to(agent.device)
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.opt = torch.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
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

    def actor_update(self, obs: torch.Tensor) -> None:
        self.critics.requires_grad_(False)
        action, logp = self.actor(obs, self.gen)
        x = torch.cat([obs, action], -1)
        q = torch.stack([c(x).squeeze(-1) for c in self.critics]).mean(0)
        loss = (self.cfg.init_alpha * logp - q).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        self.critics.requires_grad_(True)


def make_agent(args: argparse.Namespace, device_name: str, fused_update: str, phase: str) -> PorlAgent:
    cfg = PorlConfig(n_critics=args.n_critics, n_target_critics=min(2, args.n_critics),
                     critic_hidden=(args.hidden, args.hidden), actor_hidden=(args.hidden, args.hidden),
                     critic_layer_norm=not args.no_layer_norm, batch_size=args.batch, utd_ratio=args.utd,
                     actor_update_every=args.utd,  # one actor update per env step, as in the figure
                     presample_steps=0, device=device_name, seed=0, fused_update=fused_update)
    agent = PorlAgent(OBS_DIM, ACT_DIM, -np.ones(ACT_DIM), np.ones(ACT_DIM), cfg)
    agent.set_phase(phase)
    return agent


class Stream:
    """One new transition per env step, as the learner gets them (the device copy must follow)."""

    def __init__(self, replay: ReplayBuffer, rng: np.random.Generator) -> None:
        self.replay = replay
        self.rows = [(rng.normal(size=OBS_DIM), rng.uniform(-1, 1, ACT_DIM), rng.normal(), rng.normal(size=OBS_DIM))
                     for _ in range(256)]
        self.n = 0

    def add(self) -> None:
        o, a, r, no = self.rows[self.n % len(self.rows)]
        self.replay.add(o, a, r, no, False)
        self.n += 1


class Precision:
    """TF32 matmuls while a step runs (a global switch: set and restored around each call)."""

    def __init__(self, tf32: bool) -> None:
        self.tf32 = tf32

    def __enter__(self) -> None:
        self.before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.tf32

    def __exit__(self, *exc) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.before


def bench(device_name: str, args: argparse.Namespace) -> None:
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    def compiled(agent: PorlAgent) -> PorlAgent:
        if args.compile:
            agent.critic.forward = torch.compile(agent.critic.forward)
            agent.critic_target.forward = torch.compile(agent.critic_target.forward)
        return agent

    critic_agent = compiled(make_agent(args, device_name, "off", "presample"))  # critic-only updates
    cfg = critic_agent.config
    if args.compile:
        print("  torch.compile of the critic-ensemble forwards enabled for the batched critic updates and the "
              "eager step (compiled during warm-up)")
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(10_000, OBS_DIM, ACT_DIM)
    for _ in range(10_000):
        replay.add(rng.normal(size=OBS_DIM), rng.uniform(-1, 1, ACT_DIM), rng.normal(), rng.normal(size=OBS_DIM),
                   bool(rng.random() < 0.01))
    stream = Stream(replay, rng)
    batches = [replay.sample(args.batch, device, rng) for _ in range(8)]
    it = iter(range(10**12))
    loop = LoopCritics(critic_agent, cfg)

    def batched_critic():
        critic_agent.update(batches[next(it) % 8])

    def loop_critic():
        loop.update(batches[next(it) % 8])

    def loop_step():  # the per-member loop doing a full PORL step: U critic updates + 1 actor update
        stream.add()
        for _ in range(args.utd):
            batch = replay.sample(args.batch, device, rng)
            loop.update(batch)
        loop.actor_update(batch.obs)

    def agent_step(agent: PorlAgent, tf32: bool = False):
        def run():
            stream.add()
            with Precision(tf32):
                agent.train_after_env_step(replay)
        return run

    # Full PORL steps (U critic updates + 1 actor update per env step), one agent per path.
    steps = {"per-member loop": loop_step,
             "eager (fused_update off)": agent_step(compiled(make_agent(args, device_name, "off", "finetune"))),
             "fused block, uncaptured (eager)": agent_step(make_agent(args, device_name, "eager", "finetune"))}
    if cuda:
        steps["fused block, CUDA graph (graph)"] = agent_step(make_agent(args, device_name, "graph", "finetune"))
    fast = "fused block, CUDA graph (graph)" if cuda else "fused block, uncaptured (eager)"
    reduced = {}  # reported separately: not the default numerics
    mode = "graph" if cuda else "eager"
    for precision in args.precision:
        if precision == "tf32":
            if not cuda:
                print("  (TF32 is a CUDA matmul mode: no tf32 row on CPU)")
                continue
            reduced[f"{mode} + TF32 matmuls"] = agent_step(make_agent(args, device_name, mode, "finetune"), tf32=True)
        elif precision == "bf16":
            agent = make_agent(args, device_name, mode, "finetune")
            agent.fused = FusedUpdater(agent, capture=cuda, autocast_dtype=torch.bfloat16)
            reduced[f"{mode} + bf16 autocast"] = agent_step(agent)

    # Warm up (compile, capture) everything once, then measure in interleaved rounds and keep
    # each figure's best round: on a shared machine this filters out other processes' load.
    figures = {"batched": batched_critic, "loop": loop_critic, **steps, **reduced}
    for fn in figures.values():
        for _ in range(20 if args.compile else WARMUP_BLOCKS + 2):
            fn()
    best = dict.fromkeys(["ceiling", *figures], 0.0)
    per = args.seconds / args.rounds
    for _ in range(args.rounds):
        best["ceiling"] = max(best["ceiling"], gemm_ceiling(device, per))
        for name, fn in figures.items():
            best[name] = max(best[name], rate(fn, per, device, 1))
    ceiling, r_batched, r_loop = best["ceiling"], best["batched"], best["loop"]

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
    print(f"  full PORL step (U={args.utd} critic + 1 actor update, 1 new transition), env steps/s:")
    for group in (steps, reduced):
        if group is reduced and reduced:
            print("  reduced precision (not the default; losses differ from fp32):")
        for name in group:
            r = best[name]
            print(f"    {name:34s} {r:8.2f}  ({r * f_step / 1e9:7.1f} GFLOP/s, {100 * r * f_step / ceiling:5.1f}% "
                  f"of ceiling, {r / best['per-member loop']:5.2f}x the loop)")
    print(f"  {fast} / eager: {best[fast] / best['eager (fused_update off)']:.2f}x")


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
    p.add_argument("--precision", nargs="*", default=[], choices=["tf32", "bf16"],
                   help="also measure the fast path with TF32 matmuls (CUDA) and/or bf16 autocast, reported "
                        "separately (off by default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [args.device] if args.device != "all" else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores")
    for d in devices:
        bench(d, args)


if __name__ == "__main__":
    main()
