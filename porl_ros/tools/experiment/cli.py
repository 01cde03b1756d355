"""`porl-ros experiment [options]`: one option per field of the experiment's settings classes.

The defaults shown are the chosen `--profile`'s (what its parameter files give the graph's
nodes), so `--help` with `--profile gpu` shows the GPU run's values.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from porl_ros.core.settings import SettingError, add_options, field_names

from . import __doc__ as overview
from .settings import EXPERIMENT_CLASSES, PER_RUN, Experiment, GridSettings, profile_defaults


def build_parser(profile: str = "cpu") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="porl-ros experiment", description=overview.split("\n\n")[0])
    p.add_argument("--out", default="runs/experiment", help="output directory (default runs/experiment)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes, each with torch_threads; "
                   "default 1)")
    p.add_argument("--render-only", action="store_true", help="only rebuild results.csv, curves.png, table.md")
    try:
        defaults = profile_defaults(profile)
    except ValueError:  # an unknown profile: Experiment.build names it
        defaults = {}
    for name, cls in EXPERIMENT_CLASSES.items():
        add_options(p, cls, {**defaults, "profile": profile}, title=f"{name} ({cls.__name__})", exclude=PER_RUN)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--profile", default=GridSettings().profile)
    profile = pre.parse_known_args(argv)[0].profile
    try:
        args = build_parser(profile).parse_args(argv)
        experiment = Experiment.build({k: v for k, v in vars(args).items()
                                       if k in field_names(*EXPERIMENT_CLASSES.values())})
    except SettingError as exc:
        print(f"experiment: error: {exc}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"experiment: error: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    from .grid import run_grid
    from .render import render
    if args.render_only:
        render(args.out)
    else:
        run_grid(experiment, args.out, jobs=args.jobs)
    print(open(os.path.join(args.out, "table.md"), encoding="utf-8").read())
    print(f"wrote {os.path.join(args.out, 'results.csv')}, curves.png, table.md")
    return 0
