"""The grid's results: the per-run CSV files, merged into results.csv, curves.png and table.md."""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

from .settings import VARIANTS
from .single_run import COLUMNS

INT_COLUMNS = ("seed", "env_steps", "presample_steps", "actor_updates")
TEXT_COLUMNS = ("variant", "task", "phase")


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
        for k in COLUMNS:
            if k not in TEXT_COLUMNS:
                r[k] = int(float(r[k])) if k in INT_COLUMNS else float(r[k])
    return rows


def render(out: str) -> list[dict[str, Any]]:
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
    colors = {"porl": "tab:blue", "paper": "black", "t0": "tab:red", "eps0": "tab:orange", "scratch": "tab:gray",
              "adaptive": "tab:green", "no_mc": "tab:purple", "no_trust": "tab:brown", "no_qnorm": "tab:pink",
              "no_cnorm": "tab:olive", "no_guard": "tab:cyan"}
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
