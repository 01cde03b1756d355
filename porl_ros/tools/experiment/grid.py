"""The grid's runs: which are still to do, running them (in parallel processes), one CSV file each."""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

from .render import render, write_rows
from .settings import VARIANTS, Experiment
from .single_run import pretrained_actor, run_single, task_slug


def run_file(out: str, variant: str, task: str, seed: int, suffix: str = "csv") -> str:
    return os.path.join(out, "runs", f"{variant}__{task_slug(task)}__s{seed}.{suffix}")


def _worker(args: tuple) -> tuple[str, str, int, float]:
    values, variant, task, seed, out = args
    experiment = Experiment.build(values)
    t0 = time.perf_counter()
    with open(run_file(out, variant, task, seed, "log"), "w", encoding="utf-8") as log_file:
        def log(msg: str) -> None:
            log_file.write(msg + "\n")
            log_file.flush()
        rows = run_single(experiment, variant, task, seed, os.path.join(out, "bc"), log=log)
    write_rows(run_file(out, variant, task, seed), rows)
    return variant, task, seed, time.perf_counter() - t0


def _pretrain_worker(args: tuple) -> tuple[str, int]:
    values, task, seed, out = args
    import torch
    experiment = Experiment.build(values)
    torch.set_num_threads(experiment.grid.torch_threads)
    pretrained_actor(experiment, task, seed, os.path.join(out, "bc"))
    return task, seed


def run_grid(experiment: Experiment, out: str, jobs: int = 1, say=print) -> list[dict[str, Any]]:
    """Run every (variant, task, seed) not already finished in `out`; write all outputs."""
    grid = experiment.grid
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    os.makedirs(os.path.join(out, "bc"), exist_ok=True)
    values = experiment.to_dict()
    with open(os.path.join(out, "settings.json"), "w", encoding="utf-8") as f:
        json.dump({"settings": values, "host": platform.node(), "cpu_count": os.cpu_count(),
                   "platform": platform.platform()}, f, indent=2)
    need_bc = sorted({(t, s) for v in grid.variants if VARIANTS[v].pretrained for t in grid.tasks for s in grid.seeds})
    todo = [(values, v, t, s, out) for t in grid.tasks for s in grid.seeds for v in grid.variants
            if not os.path.exists(run_file(out, v, t, s))]
    start = time.perf_counter()
    say(f"experiment: {len(todo)} runs to do ({len(grid.variants)} variants x {len(grid.tasks)} tasks x "
        f"{len(grid.seeds)} seeds), {jobs} job(s), output {out}")
    if jobs <= 1:
        for task, seed in need_bc:
            _pretrain_worker((values, task, seed, out))
        for i, item in enumerate(todo, 1):
            v, t, s, sec = _worker(item)
            say(f"  [{i}/{len(todo)}] {v} {t} seed {s}: {sec:.0f} s")
    else:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(jobs) as pool:
            for task, seed in pool.imap_unordered(_pretrain_worker, [(values, t, s, out) for t, s in need_bc]):
                say(f"  BC policy ready: {task} seed {seed}")
            for i, (v, t, s, sec) in enumerate(pool.imap_unordered(_worker, todo), 1):
                say(f"  [{i}/{len(todo)}] {v} {t} seed {s}: {sec:.0f} s")
    say(f"experiment: grid done in {time.perf_counter() - start:.0f} s")
    return render(out)
