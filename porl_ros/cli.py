"""`porl-ros <command>`: one entry point for the project's tools.

  run        fine-tune with PORL through the ROS 2 graph (the main job)
  pretrain   collect expert demonstrations and train a BC policy
  evaluate   success rate and return of a checkpoint
  report     learning-curve PNG + summary JSON of a run directory (porl-ros report RUN_DIR)
  experiment grid of PORL variants x tasks x seeds, in-process: CSV, curves, table
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

COMMANDS = {
    "run": "porl_ros.runner",
    "pretrain": "porl_ros.tools.pretrain",
    "evaluate": "porl_ros.tools.evaluate",
    "report": "porl_ros.monitoring.report",
    "experiment": "porl_ros.tools.experiment",
}


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"porl-ros: unknown command '{command}'; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
