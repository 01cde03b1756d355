"""`porl-ros report RUN_DIR`: a learning-curve PNG and a summary JSON for a run.

Reads the learner's per-episode log (RUN_DIR/learner/metrics.jsonl, or RUN_DIR/metrics.jsonl
for a learner's own run_dir) and, when present, the runner's RUN_DIR/summary.json
(before/after evaluation, presample_steps). Writes RUN_DIR/report.png with three panels
against env steps:
  success rate       trailing mean over `window` episodes; before/after evaluation marks and
                     the evaluations during the run (RUN_DIR/evaluations.jsonl)
  episode return     per episode (faint) and smoothed; before/after evaluation marks
  Q calibration gap  mean(Q(s,a) - discounted Monte-Carlo return) per episode: above 0
                     the critics overestimate, below 0 they underestimate
with the pre-sample stage shaded and a vertical line where fine-tuning starts, and
RUN_DIR/report.json with the numbers behind it. When the run was recorded (RUN_DIR/bag), also
RUN_DIR/episodes.png: the end effector's path in the best and worst episodes before and after
fine-tuning (porl_ros/monitoring/episodes.py; report.json "episode_view").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from porl_ros.core.phases import FINETUNE, PRESAMPLE

REPORT_PNG = "report.png"
REPORT_JSON = "report.json"
FIGURE_SIZE_IN = (10.0, 10.0)
DPI = 100  # 1000 x 1000 pixels
DEFAULT_WINDOW = 20  # episodes; the learner's own success-rate window


class ReportError(ValueError):
    """A run directory the report cannot be made from; the message says what is missing."""


def find_metrics(run_dir: Path) -> Path:
    for candidate in (run_dir / "learner" / "metrics.jsonl", run_dir / "metrics.jsonl"):
        if candidate.is_file():
            return candidate
    raise ReportError(f"no metrics.jsonl in {run_dir} or {run_dir / 'learner'} (is it a porl-ros run directory?)")


def load_metrics(path: Path) -> tuple[list[dict], int]:
    """Episode rows sorted by env_steps, and how many lines were unreadable.

    A torn last line (the learner killed mid-write) and malformed lines are skipped, not
    fatal. After a resume the learner may log an episode again: the last row of each
    (bridge_id, episode) wins.
    """
    rows: dict[tuple, dict] = {}
    skipped = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row["env_steps"] = int(row["env_steps"])
            row["return"] = float(row["return"])
            row["success"] = bool(row["success"])
        except (ValueError, KeyError, TypeError):
            skipped += 1
            continue
        rows[(row.get("bridge_id", 0), row.get("episode", len(rows)))] = row
    return sorted(rows.values(), key=lambda r: r["env_steps"]), skipped


def trailing_mean(values, window: int) -> np.ndarray:
    """Mean of the last `window` values at each index (fewer at the start); NaNs ignored."""
    x = np.asarray(values, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    for i in range(len(x)):
        chunk = x[max(0, i - window + 1): i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def _finite_mean(values) -> Optional[float]:
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _gap(row: dict) -> float:
    value = row.get("q_calibration_gap")
    return float(value) if isinstance(value, (int, float)) else math.nan


def presample_switch(rows: list[dict], summary: dict) -> tuple[Optional[int], bool]:
    """The env step where fine-tuning starts, and whether it is exact.

    Exact from summary.json's presample_steps; otherwise bounded by the episodes' phases
    (the last pre-sample episode's end), which is what the log alone can tell.
    """
    for source in (summary, summary.get("learner") or {}):
        if isinstance(source.get("presample_steps"), int):
            return source["presample_steps"], True
    if not any(r.get("phase") == FINETUNE for r in rows):
        return None, False
    presample_ends = [r["env_steps"] for r in rows if r.get("phase") == PRESAMPLE]
    return (max(presample_ends) if presample_ends else 0), False


def _phase_stats(rows: list[dict]) -> dict:
    return {"episodes": len(rows),
            "success_rate": _finite_mean([float(r["success"]) for r in rows]),
            "mean_return": _finite_mean([r["return"] for r in rows]),
            "mean_q_calibration_gap": _finite_mean([_gap(r) for r in rows])}


def _evaluation(summary: dict, key: str) -> Optional[dict]:
    value = summary.get(key)
    if not isinstance(value, dict) or "success_rate" not in value:
        return None
    return {k: value.get(k) for k in ("success_rate", "mean_return", "std_return", "episodes")}


def summarize(rows: list[dict], summary: dict, window: int = DEFAULT_WINDOW) -> dict:
    """The numbers of report.json (and of the plot's annotations)."""
    if not rows:
        raise ReportError("metrics.jsonl holds no finished episode yet")
    switch, exact = presample_switch(rows, summary)
    steps = np.array([r["env_steps"] for r in rows])
    success = trailing_mean([float(r["success"]) for r in rows], window)
    best = int(np.nanargmax(success))
    last = rows[-window:]
    first_success = next((r["env_steps"] for r in rows if r["success"]), None)
    times = [r["time"] for r in rows if isinstance(r.get("time"), (int, float))]
    learner = summary.get("learner") or {}
    return {
        "env": summary.get("env", ""),
        "episodes": len(rows),
        "env_steps": int(max(int(steps.max()), learner.get("env_steps", 0) or 0)),
        "window": window,
        "presample_steps": switch,
        "presample_steps_exact": exact,
        "presample": _phase_stats([r for r in rows if r.get("phase") == PRESAMPLE]),
        "finetune": _phase_stats([r for r in rows if r.get("phase") == FINETUNE]),
        "final": {"episodes": len(last),
                  "success_rate": _finite_mean([float(r["success"]) for r in last]),
                  "mean_return": _finite_mean([r["return"] for r in last]),
                  "q_calibration_gap": _finite_mean([_gap(r) for r in last])},
        "best_smoothed_success_rate": float(success[best]),
        "best_smoothed_success_at_env_steps": int(steps[best]),
        "first_success_at_env_steps": first_success,
        "gradient_updates": rows[-1].get("gradient_updates", learner.get("gradient_updates")),
        "policy_version": rows[-1].get("policy_version", learner.get("policy_version")),
        "learner_wall_seconds": round(max(times) - min(times), 1) if len(times) > 1 else None,
        "before": _evaluation(summary, "before"),
        "after": _evaluation(summary, "after"),
        "evaluations": summary.get("evaluations") or [],
    }


def render(rows: list[dict], report: dict, out_png: Path, title: str = "") -> Path:
    """Draw the three panels into `out_png` (Agg, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    window = report["window"]
    steps = np.array([r["env_steps"] for r in rows], dtype=np.float64)
    returns = np.array([r["return"] for r in rows])
    gaps = np.array([_gap(r) for r in rows])
    x_end = max(float(report["env_steps"]), 1.0)

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    ax_success, ax_return, ax_gap = fig.subplots(3, 1, sharex=True)
    before, after = report["before"], report["after"]

    smoothed = f"trailing mean of <= {window} episodes"
    ax_success.plot(steps, trailing_mean([float(r["success"]) for r in rows], window), color="tab:green",
                    lw=2, label=f"training episodes, {smoothed}")
    ax_success.set_ylim(-0.05, 1.05)
    ax_success.set_ylabel("success rate")

    ax_return.plot(steps, returns, color="tab:blue", alpha=0.3, lw=0.8, marker=".", ms=3, label="per episode")
    ax_return.plot(steps, trailing_mean(returns, window), color="tab:blue", lw=2, label=smoothed)
    ax_return.set_ylabel("episode return")

    ax_gap.axhline(0.0, color="black", lw=0.8)
    if np.any(np.isfinite(gaps)):
        ax_gap.plot(steps, gaps, color="tab:purple", alpha=0.3, lw=0.8, marker=".", ms=3, label="per episode")
        ax_gap.plot(steps, trailing_mean(gaps, window), color="tab:purple", lw=2, label=smoothed)
    ax_gap.set_ylabel("Q calibration gap\nmean Q(s,a) - MC return")
    ax_gap.set_xlabel("env steps")
    ax_gap.set_title("Q calibration: > 0 the critics overestimate the return, < 0 they underestimate it",
                     fontsize=9)

    evaluations = report.get("evaluations") or []
    if evaluations:
        x = [row["env_steps"] for row in evaluations]
        ax_success.plot(x, [row["success_rate"] for row in evaluations], color="black", lw=1.5, marker="D", ms=4,
                        label=f"evaluation of the actor ({evaluations[0].get('episodes', '?')} episodes each)")
        ax_return.plot(x, [row["mean_return"] for row in evaluations], color="black", lw=1.5, marker="D", ms=4,
                       label="evaluation of the actor")
    # Evaluation before (at step 0) and after (at the last step) fine-tuning.
    for result, x, marker, color, name in ((before, 0.0, "o", "black", "before"),
                                            (after, x_end, "s", "tab:red", "after")):
        if result is None:
            continue
        ax_success.plot([x], [result["success_rate"]], marker=marker, ms=9, color=color, ls="none",
                        label=f"evaluation {name}: {result['success_rate']:.2f}", clip_on=False, zorder=5)
        if result.get("mean_return") is not None:
            ax_return.errorbar([x], [result["mean_return"]], yerr=[result.get("std_return") or 0.0],
                               marker=marker, ms=9, color=color, ls="none", capsize=4, clip_on=False, zorder=5,
                               label=f"evaluation {name}: {result['mean_return']:.1f}")

    switch = report["presample_steps"]
    if switch is not None and 0 < switch <= x_end:
        label = "fine-tuning starts" + ("" if report["presample_steps_exact"] else " (at or after)")
        for i, ax in enumerate((ax_success, ax_return, ax_gap)):
            ax.axvspan(0, switch, color="0.92", zorder=0, label="pre-sample (actor frozen)" if i == 0 else None)
            ax.axvline(switch, color="tab:orange", ls="--", lw=1.5, label=label if i == 0 else None)
    for ax in (ax_success, ax_return, ax_gap):
        ax.grid(alpha=0.3)
        ax.set_xlim(-0.02 * x_end, x_end * 1.02)  # room for the evaluation marks at both ends
        ax.legend(loc="best", fontsize=8)

    final = report["final"]
    fig.suptitle(title or "porl_ros run", fontsize=12)
    sr = "n/a" if final["success_rate"] is None else f"{final['success_rate']:.2f}"
    ax_success.set_title(f"{report['episodes']} episodes, {report['env_steps']} env steps; "
                         f"last {final['episodes']} episodes: success {sr}, return {final['mean_return']:.1f}",
                         fontsize=9)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png


def write_report(run_dir: str | Path, window: int = DEFAULT_WINDOW, out_dir: Optional[Path] = None) -> dict:
    """Render report.png and write report.json for `run_dir`; returns the report dict."""
    if window < 1:
        raise ReportError(f"window must be >= 1, got {window}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory {run_dir} does not exist")
    metrics = find_metrics(run_dir)
    rows, skipped = load_metrics(metrics)
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    if not summary.get("evaluations"):  # a run that stopped early: what was evaluated so far
        from porl_ros.monitoring.evaluations import EVALUATIONS_FILE, read_evaluations
        summary["evaluations"] = read_evaluations(run_dir / EVALUATIONS_FILE)
    report = summarize(rows, summary, window)
    out_dir = Path(out_dir) if out_dir else run_dir
    png = out_dir / REPORT_PNG
    report.update(run_dir=str(run_dir.resolve()), metrics_file=str(metrics.resolve()), png=str(png.resolve()),
                  skipped_lines=skipped)
    title = f"{report['env'] or 'porl_ros'}: {run_dir.resolve().name}"
    render(rows, report, png, title)
    bag = run_dir / "bag"
    if bag.is_dir() and any(bag.glob("*.mcap")):
        from porl_ros.monitoring.episodes import write_episode_view
        try:
            report["episode_view"] = write_episode_view(bag, out_dir, title)
        except Exception as e:  # a damaged bag must not cost the curves
            report["episode_view"] = {"error": f"{type(e).__name__}: {e}"}
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="porl-ros report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="run directory of `porl-ros run` (or a learner's run_dir)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help=f"episodes in the smoothing window (default {DEFAULT_WINDOW})")
    parser.add_argument("--out", default=None, help="directory for report.png/report.json (default RUN_DIR)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.run_dir, args.window, args.out)
    except ReportError as e:
        print(f"porl-ros report: {e}", file=sys.stderr)
        return 2
    final = report["final"]
    sr = "n/a" if final["success_rate"] is None else f"{final['success_rate']:.2f}"
    print(f"[porl] report: {report['episodes']} episodes, {report['env_steps']} env steps; last "
          f"{final['episodes']} episodes: success {sr}, return {final['mean_return']:.1f}; "
          f"{report['png']}, {Path(report['png']).with_name(REPORT_JSON)}")
    view = report.get("episode_view")
    if view:
        print(f"[porl] episode view: {view['png']} ({view['episodes_with_path']} episodes with a path)"
              if "png" in view else f"[porl] no episode view: {view['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
