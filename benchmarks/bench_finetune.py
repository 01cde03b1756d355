"""Does fine-tuning lift the policy, and never wreck it? The checks of docs/results.md, as a script.

Runs `porl-ros experiment` (the graph's step loop in one process, with the graph's settings of
the chosen profile) for the `porl` variant over tasks x seeds, then prints per run: the
evaluation before fine-tuning, the worst evaluation after the actor is released, the final one,
and whether the checks hold:
  lift      final success >= --target (0.9), or for a weak start >= start + --min-lift;
  no wreck  no evaluation after the switch falls more than --max-dip (0.15) below the start.

    python benchmarks/bench_finetune.py                       # push-v3, seeds 0 1 2, CPU profile
    python benchmarks/bench_finetune.py --profile gpu --device auto --tasks metaworld/push-v3 \\
        metaworld/reach-v3 --jobs 8                           # the paper's sizes on a GPU machine

Extra arguments after `--` go to `porl-ros experiment` unchanged (e.g. `-- --total-steps 20000`).
The runs are cached in --out: a second call only re-prints (delete the folder to re-run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from porl_ros.tools.experiment.cli import main as experiment_main
from porl_ros.tools.experiment.render import read_rows


def judge(rows: list[dict], switch: int, target: float, min_lift: float, max_dip: float) -> dict:
    rows = sorted(rows, key=lambda r: r["env_steps"])
    start, final = rows[0]["success_rate"], rows[-1]["success_rate"]
    after = [r["success_rate"] for r in rows if r["env_steps"] > switch]
    worst = min(after) if after else start
    return {"start": start, "worst_after_switch": worst, "final": final,
            "lift": final >= target or final >= start + min_lift, "no_wreck": worst >= start - max_dip}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--device", default=None, help="learner device (default: the profile's)")
    p.add_argument("--tasks", nargs="+", default=["metaworld/push-v3"])
    p.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    p.add_argument("--variant", default="porl")
    p.add_argument("--eval-every", default="1000")
    p.add_argument("--eval-episodes", default="20")
    p.add_argument("--jobs", default="2")
    p.add_argument("--out", default="runs/bench_finetune")
    p.add_argument("--target", type=float, default=0.9)
    p.add_argument("--min-lift", type=float, default=0.2)
    p.add_argument("--max-dip", type=float, default=0.15)
    args = p.parse_args(argv)
    command = ["--profile", args.profile, "--out", args.out, "--jobs", args.jobs, "--variants", args.variant,
               "--tasks", *args.tasks, "--seeds", *args.seeds, "--eval-every", args.eval_every,
               "--eval-episodes", args.eval_episodes] + (["--device", args.device] if args.device else []) + extra
    code = experiment_main(command)
    if code != 0:
        return code
    rows = read_rows(os.path.join(args.out, "results.csv"))
    print(f"\nhardware: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
          + _gpu_text() + f"; profile {args.profile}")
    print("| task | seed | start | worst after switch | final | lift | no wreck |\n|---|---|---|---|---|---|---|")
    verdicts = []
    for task in args.tasks:
        for seed in map(int, args.seeds):
            mine = [r for r in rows if r["task"] == task and r["seed"] == seed and r["variant"] == args.variant]
            if not mine:
                continue
            v = judge(mine, int(mine[-1]["presample_steps"]), args.target, args.min_lift, args.max_dip)
            verdicts.append(v)
            print(f"| {task} | {seed} | {v['start']:.2f} | {v['worst_after_switch']:.2f} | {v['final']:.2f} | "
                  f"{'yes' if v['lift'] else 'NO'} | {'yes' if v['no_wreck'] else 'NO'} |")
    summary = {"runs": len(verdicts), "lift": sum(v["lift"] for v in verdicts),
               "no_wreck": sum(v["no_wreck"] for v in verdicts),
               "mean_start": sum(v["start"] for v in verdicts) / max(len(verdicts), 1),
               "mean_final": sum(v["final"] for v in verdicts) / max(len(verdicts), 1)}
    print(json.dumps(summary))
    return 0


def _gpu_text() -> str:
    try:
        import torch
        return f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    except ImportError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
