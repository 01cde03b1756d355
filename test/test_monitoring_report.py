"""The end-of-run report: PNG learning curves + report.json from a metrics.jsonl."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from porl_ros.cli import main as cli_main
from porl_ros.monitoring.report import DPI, FIGURE_SIZE_IN, ReportError, load_metrics, trailing_mean, write_report


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def _rows(episodes: int = 40, length: int = 50, presample_steps: int = 1000) -> list[dict]:
    """Deterministic episodes: pre-sample succeeds every 4th episode, fine-tune every 2nd."""
    rows = []
    for episode in range(episodes):
        steps = (episode + 1) * length
        phase = "presample" if steps <= presample_steps else "finetune"
        success = episode % (4 if phase == "presample" else 2) == 0
        rows.append({"env_steps": steps, "bridge_id": 0, "episode": episode, "return": float(episode),
                     "success": success, "length": length, "phase": phase,
                     "q_calibration_gap": 10.0 - episode * 0.25, "success_rate": 0.0,
                     "gradient_updates": steps * 2, "policy_version": episode, "time": 100.0 + episode})
    return rows


def _write_run(run_dir: Path, rows: list[dict], summary: dict | None, tail: str = "") -> None:
    (run_dir / "learner").mkdir(parents=True)
    (run_dir / "learner" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))


def test_report_png_and_numbers(tmp_path):
    run_dir = tmp_path / "run"
    before = {"success_rate": 0.1, "mean_return": 2.0, "std_return": 1.0, "episodes": 10, "per_episode": None}
    after = {"success_rate": 0.6, "mean_return": 30.0, "std_return": 3.0, "episodes": 10, "per_episode": None}
    _write_run(run_dir, _rows(), {"env": "metaworld/reach-v3", "presample_steps": 1000, "before": before,
                                  "after": after},
               tail='{"env_steps": 2050, "ret')  # torn last line of a killed learner
    report = write_report(run_dir, window=10)

    png = run_dir / "report.png"
    assert png.is_file()
    assert png_size(png) == (int(FIGURE_SIZE_IN[0] * DPI), int(FIGURE_SIZE_IN[1] * DPI))
    assert png.stat().st_size > 20_000  # three panels of curves, not an empty canvas
    saved = json.loads((run_dir / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["episodes"] == 40 and saved["env_steps"] == 2000 and saved["skipped_lines"] == 1
    assert saved["presample_steps"] == 1000 and saved["presample_steps_exact"]
    # Episodes 0..19 end at or before step 1000 (pre-sample): 0, 4, 8, 12, 16 succeed.
    assert saved["presample"]["episodes"] == 20 and saved["presample"]["success_rate"] == pytest.approx(5 / 20)
    assert saved["finetune"]["episodes"] == 20 and saved["finetune"]["success_rate"] == pytest.approx(0.5)
    assert saved["presample"]["mean_return"] == pytest.approx(9.5)  # mean of 0..19
    assert saved["final"]["episodes"] == 10 and saved["final"]["mean_return"] == pytest.approx(34.5)
    assert saved["final"]["q_calibration_gap"] == pytest.approx(10.0 - 34.5 * 0.25)
    assert saved["first_success_at_env_steps"] == 50
    assert saved["gradient_updates"] == 4000 and saved["policy_version"] == 39
    assert saved["learner_wall_seconds"] == pytest.approx(39.0)
    assert saved["before"]["success_rate"] == 0.1 and saved["after"]["mean_return"] == 30.0


def test_report_without_summary_infers_the_switch_and_dedupes_resumed_episodes(tmp_path):
    run_dir = tmp_path / "run"
    rows = _rows(episodes=30)
    # A resumed learner logged episodes 25..29 again (its last checkpoint was before them).
    resumed = [dict(r, **{"return": 100.0}) for r in rows[25:]]
    _write_run(run_dir, rows + resumed, summary=None)
    loaded, skipped = load_metrics(run_dir / "learner" / "metrics.jsonl")
    assert len(loaded) == 30 and skipped == 0
    assert [r["return"] for r in loaded[25:]] == [100.0] * 5
    report = write_report(run_dir, window=5)
    # Only the log: fine-tuning began after the last pre-sample episode ended (step 1000).
    assert report["presample_steps"] == 1000 and not report["presample_steps_exact"]
    assert report["before"] is None and report["after"] is None
    assert report["final"]["mean_return"] == pytest.approx(100.0)
    assert (run_dir / "report.png").is_file()


def test_trailing_mean_ignores_nan():
    assert trailing_mean([1.0, float("nan"), 3.0, 5.0], 2).tolist() == [1.0, 1.0, 3.0, 4.0]


def test_report_command(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _write_run(run_dir, _rows(episodes=8), {"presample_steps": 1000})
    assert cli_main(["report", str(run_dir), "--window", "4"]) == 0
    assert "8 episodes" in capsys.readouterr().out
    assert json.loads((run_dir / "report.json").read_text())["window"] == 4
    # Clear errors for what is not a run directory.
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    with pytest.raises(ReportError, match="window"):
        write_report(run_dir, window=0)


def _write_bag(bag_dir: Path, episodes: int = 11, length: int = 20) -> None:
    """A small recorded run: episodes 0-3 in pre-sample, 4.. fine-tuning; episode i earns
    return i (one reward per step); the end effector moves along +x, the goal at (1, 0, 0)."""
    import rclpy.time
    from rclpy.serialization import serialize_message

    from porl_ros import graph
    from porl_ros.monitoring.bag import BagWriter
    from porl_ros.nodes.visualization import build_markers
    from porl_ros_interfaces.msg import Transition

    bag = BagWriter(bag_dir)
    bag.add_topic(graph.TRANSITION_TOPIC, "porl_ros_interfaces/msg/Transition")
    bag.add_topic(graph.MARKERS_TOPIC, "visualization_msgs/msg/MarkerArray")
    seq, stamp = 0, rclpy.time.Time().to_msg()
    for episode in range(episodes):
        phase = "presample" if episode < 4 else "finetune"
        for step in range(length):
            bag.write(graph.TRANSITION_TOPIC, serialize_message(Transition(
                seq=seq, episode=episode, step=step, reward=episode / length, success=episode >= 8,
                policy_version=0 if phase == "presample" else 5)))
            seq += 1
            if step % 5 == 0:
                points = {"end_effector": [0.01 * step * (1 + episode), 0.001 * episode, 0.2],
                          "goal": [1.0, 0.0, 0.0]}
                bag.write(graph.MARKERS_TOPIC, serialize_message(build_markers(
                    "world", stamp, points, action=[1.0, 0.0, 0.0, 0.0],
                    text=f"bridge 0  episode {episode}  step {step}  {phase}")))
    bag.close()


def test_report_adds_the_episode_view_from_the_bag(tmp_path):
    from porl_ros.monitoring.episodes import EPISODES_PNG, episodes_from_bag

    run_dir = tmp_path / "run"
    _write_run(run_dir, _rows(), {"presample_steps": 1000})
    _write_bag(run_dir / "bag")
    episodes = episodes_from_bag(run_dir / "bag")
    assert [e.episode for e in episodes] == list(range(11))
    assert [len(e.path) for e in episodes] == [4] * 11 and episodes[3].goal == (1.0, 0.0, 0.0)
    assert episodes[3].ret == pytest.approx(3.0) and episodes[3].phase == "presample" and episodes[5].phase == "finetune"
    report = write_report(run_dir, window=10)
    view = report["episode_view"]
    assert png_size(run_dir / EPISODES_PNG) == (1200, 600)
    assert json.loads((run_dir / "report.json").read_text())["episode_view"] == view
    # Before: pre-sample episodes 0-3; after: the last quarter of the complete fine-tuning
    # episodes 4-9 (episode 10, the last, may be cut short).
    assert (view["before"]["best"]["episode"], view["before"]["worst"]["episode"]) == (3, 0)
    assert (view["after"]["best"]["episode"], view["after"]["worst"]["episode"]) == (9, 8)
    assert view["after"]["best"]["success"] and view["episodes"] == 11


def test_report_without_bag_has_no_episode_view_and_survives_a_broken_one(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir, _rows(), None)
    assert "episode_view" not in write_report(run_dir)
    (run_dir / "bag").mkdir()
    (run_dir / "bag" / "bag_0.mcap").write_bytes(b"not an mcap file")
    report = write_report(run_dir)
    assert "report.png" in report["png"] and set(report["episode_view"]) <= {"error", "png", "episodes",
                                                                            "episodes_with_path"}
