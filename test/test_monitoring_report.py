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
