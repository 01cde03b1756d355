"""Writes config/foxglove_layout.json, the Foxglove layout for a run (live or from its bag),
with foxglove-sdk's layout types:

    scripts/porl-env python -m porl_ros.tools.foxglove_layout [--out config/foxglove_layout.json]

Left: the scene (3D panel on /porl/markers in frame `world`: end effector, goal, action arrow,
success flash, episode text). Right: learning curves from /porl/status (success rate and
return; critic loss and Q-calibration gap; phase and policy version as the latest status),
and node health from /diagnostics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import foxglove.layouts as fl

from porl_ros import graph

LAYOUT_FILE = graph.source_config_dir() / "foxglove_layout.json"
FRAME = "world"


def _plot(title: str, *fields: str) -> fl.PlotPanel:
    return fl.PlotPanel(title=title, config=fl.PlotConfig(
        paths=[fl.PlotSeries(value=f"{graph.STATUS_TOPIC}.{name}", timestamp_method="receiveTime")
               for name in fields]))


def build_layout() -> fl.Layout:
    scene = fl.ThreeDeePanel(title="scene", config=fl.ThreeDeeConfig(
        follow_tf=FRAME, fixed_frame=FRAME,
        topics={graph.MARKERS_TOPIC: fl.BaseRendererRosMarkerTopicSettings(visible=True)}))
    curves = fl.SplitContainer(direction="column", items=[
        fl.SplitItem(content=_plot("success and return", "success_rate", "last_episode_return")),
        fl.SplitItem(content=_plot("critic", "critic_loss", "q_calibration_gap", "effective_utd")),
        fl.SplitItem(content=fl.RawMessagesPanel(title="status", config=fl.RawMessagesConfig(
            topic_path=graph.STATUS_TOPIC))),
    ])
    health = fl.DiagnosticsSummaryPanel(title="node health", config=fl.DiagnosticsSummaryConfig(
        topic_to_render=graph.DIAGNOSTICS_TOPIC, sort_by_level=True))
    return fl.Layout(content=fl.SplitContainer(direction="row", items=[
        fl.SplitItem(proportion=3, content=scene),
        fl.SplitItem(proportion=2, content=curves),
        fl.SplitItem(proportion=2, content=health),
    ]))


def layout_text() -> str:
    return json.dumps(json.loads(build_layout().to_json()), indent=2, sort_keys=True) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(LAYOUT_FILE))
    args = parser.parse_args(argv)
    Path(args.out).write_text(layout_text())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
