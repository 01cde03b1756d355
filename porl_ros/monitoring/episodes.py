"""The episode view of a run, from its bag: where the end effector went in the best and the
worst episode before fine-tuning (pre-sample: the frozen pre-trained policy) and after (the
last fine-tuning episodes). `porl-ros report` writes it as RUN_DIR/episodes.png beside
report.png, and its numbers into report.json ("episode_view").

Paths come from the markers the sim bridge publishes (/porl/markers, viz_rate_hz: the
`end_effector` sphere, the `goal` sphere and the `info` text naming bridge, episode and
phase); returns and successes from the transitions. No rclpy: the bag is decoded with
mcap_ros2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from porl_ros import graph
from porl_ros.core.phases import FINETUNE, PRESAMPLE
from porl_ros.monitoring.bag import read_messages

EPISODES_PNG = "episodes.png"
FIGURE_SIZE_IN = (12.0, 6.0)
DPI = 100
INFO = re.compile(r"bridge (\d+)\s+episode (\d+)\s+step (\d+)\s+(\w*)")
# Episodes "after fine-tuning": the last fine-tuning episodes, this fraction of them (at least one).
AFTER_FRACTION = 0.25


@dataclass
class Episode:
    bridge_id: int
    episode: int
    phase: str = ""
    ret: float = 0.0
    success: bool = False
    steps: int = 0
    path: list = field(default_factory=list)  # end-effector positions (x, y, z), in marker order
    goal: Optional[tuple] = None

    @property
    def key(self) -> tuple[int, int]:
        return self.bridge_id, self.episode

    def summary(self) -> dict:
        return {"bridge_id": self.bridge_id, "episode": self.episode, "phase": self.phase,
                "return": round(self.ret, 4), "success": self.success, "steps": self.steps,
                "path_points": len(self.path)}


def _xyz(point) -> tuple[float, float, float]:
    return float(point.x), float(point.y), float(point.z)


def episodes_from_bag(bag: str | Path) -> list[Episode]:
    """Every episode with transitions in the bag, in (bridge, episode) order, with its path
    where markers were recorded."""
    episodes: dict[tuple[int, int], Episode] = {}
    for topic, _, msg in read_messages(bag, [graph.TRANSITION_TOPIC, graph.MARKERS_TOPIC]):
        if topic == graph.TRANSITION_TOPIC:
            ep = episodes.setdefault((msg.bridge_id, msg.episode), Episode(msg.bridge_id, msg.episode))
            ep.ret += float(msg.reward)
            ep.success = ep.success or bool(msg.success)
            ep.steps += 1
            if not ep.phase:
                ep.phase = PRESAMPLE if msg.policy_version == 0 else FINETUNE
            continue
        by_ns = {m.ns.rsplit("/", 1)[-1]: m for m in msg.markers}
        info = INFO.search(by_ns["info"].text) if "info" in by_ns else None
        if info is None or "end_effector" not in by_ns:
            continue
        bridge_id, episode, _, phase = int(info[1]), int(info[2]), int(info[3]), info[4]
        ep = episodes.setdefault((bridge_id, episode), Episode(bridge_id, episode))
        if phase in (PRESAMPLE, FINETUNE):
            ep.phase = phase  # the bridge's own view of the phase wins over the policy version
        ep.path.append(_xyz(by_ns["end_effector"].pose.position))
        if "goal" in by_ns:
            ep.goal = _xyz(by_ns["goal"].pose.position)
    return [episodes[k] for k in sorted(episodes)]


def pick(episodes: list[Episode]) -> dict[str, dict[str, Episode]]:
    """{"before": {"best": ep, "worst": ep}, "after": {...}}: best and worst by return among the
    pre-sample episodes and among the last AFTER_FRACTION of the fine-tuning episodes (only
    episodes with a path, and complete ones: the last episode of each bridge may be cut)."""
    last = {}
    for ep in episodes:
        last[ep.bridge_id] = max(last.get(ep.bridge_id, -1), ep.episode)
    usable = [ep for ep in episodes if ep.path and ep.episode != last[ep.bridge_id]] or \
        [ep for ep in episodes if ep.path]
    before = [ep for ep in usable if ep.phase == PRESAMPLE]
    finetune = [ep for ep in usable if ep.phase == FINETUNE]
    after = finetune[-max(1, int(round(len(finetune) * AFTER_FRACTION))):] if finetune else []
    out = {}
    for name, group in (("before", before), ("after", after)):
        if group:
            out[name] = {"best": max(group, key=lambda e: e.ret), "worst": min(group, key=lambda e: e.ret)}
    return out


def render(picked: dict[str, dict[str, Episode]], out_png: Path, title: str = "") -> Path:
    """Two panels (before / after fine-tuning), a top view (x, y) of the end effector's path
    in the best (green) and worst (red) episode; circle: start, cross: goal."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, name, label in zip(axes, ("before", "after"), ("before fine-tuning (pre-sample, frozen policy)",
                                                          "after fine-tuning (last episodes)")):
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("x (m)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
        if name not in picked:
            ax.text(0.5, 0.5, "no episodes", transform=ax.transAxes, ha="center")
            continue
        pair = picked[name]
        for which, color in (("best", "tab:green"), ("worst", "tab:red")):
            ep = pair[which]
            if which == "worst" and ep is pair["best"]:
                continue  # one episode only: drawn once, as the best
            path = np.asarray(ep.path)
            ax.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.5,
                    label=f"{which}: episode {ep.episode} (bridge {ep.bridge_id}), return {ep.ret:.1f}"
                          f"{', success' if ep.success else ''}")
            ax.plot(path[0, 0], path[0, 1], "o", color=color, ms=6)
            if ep.goal is not None:
                ax.plot(ep.goal[0], ep.goal[1], "x", color=color, ms=10, mew=2)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("y (m)")
    if title:
        fig.suptitle(f"{title}: end-effector path (top view)")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png


def write_episode_view(bag: str | Path, out_dir: Path, title: str = "") -> dict:
    """Render episodes.png from the bag into out_dir; returns the numbers for report.json."""
    episodes = episodes_from_bag(bag)
    picked = pick(episodes)
    png = render(picked, Path(out_dir) / EPISODES_PNG, title)
    return {"png": str(png.resolve()), "episodes": len(episodes),
            "episodes_with_path": sum(1 for ep in episodes if ep.path),
            **{name: {which: ep.summary() for which, ep in pair.items()} for name, pair in picked.items()}}
