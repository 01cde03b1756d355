"""`porl-ros run --resume` continues the run that was saved: its settings (run_settings.json),
its learner counters, and each bridge's transition and episode numbering (no episode index or
seed used twice). A contradicting option is refused unless --override names it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from graph_helpers import SMALL_LEARNER, random_actor_checkpoint, run_command
from porl_ros.core.learner_state import LearnerStateStore, LoggedTransition, bridge_positions

STEPS, PRESAMPLE, EPISODE, UTD, STARTS = 120, 60, 40, 2, 32
PARAMS = SMALL_LEARNER + [f"learner:utd_ratio:={UTD}", f"learner:presample_utd_ratio:={UTD}"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


def _run(checkpoint: str, run_dir, *options: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = run_command(checkpoint, run_dir, "--episode-steps", str(EPISODE), *options, params=PARAMS)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True)


def _episodes(run_dir) -> list[int]:
    rows = [json.loads(line) for line in (run_dir / "learner" / "metrics.jsonl").read_text().splitlines()]
    return [row["episode"] for row in rows if row["bridge_id"] == 0]


def test_resume_continues_settings_counters_and_episodes(tmp_path, checkpoint):
    run_dir = tmp_path / "run"
    first = _run(checkpoint, run_dir, "--steps", str(STEPS), "--presample-steps", str(PRESAMPLE))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    saved = json.loads((run_dir / "run_settings.json").read_text())["settings"]
    assert saved["steps"] == STEPS and saved["presample_steps"] == PRESAMPLE and saved["episode_steps"] == EPISODE
    before = json.loads((run_dir / "learner" / "learner_summary.json").read_text())
    assert before["gradient_updates"] == UTD * (STEPS - STARTS + 1)
    assert _episodes(run_dir) == [0, 1, 2]

    # A contradicting option is refused at once, naming it; nothing is started.
    started = time.monotonic()
    refused = _run(checkpoint, run_dir, "--resume", "--presample-steps", "10")
    assert refused.returncode != 0
    assert "--presample-steps 10 contradicts the run being resumed (--presample-steps 60" in refused.stderr
    assert time.monotonic() - started < 60

    # Resumed without repeating --presample-steps: the saved T (60) applies, not the profile's;
    # the run is extended explicitly.
    second = _run(checkpoint, run_dir, "--resume", "--override", "steps", "--steps", str(2 * STEPS))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "bridge 0 continues at seq 120, episode 3" in second.stdout
    after = json.loads((run_dir / "learner" / "learner_summary.json").read_text())
    assert after["env_steps"] == 2 * STEPS
    # The update counter went on from the saved run (lockstep: exactly UTD per step after STARTS).
    assert after["gradient_updates"] == UTD * (2 * STEPS - STARTS + 1)
    assert after["seq_gaps"] == 0 and after["bridge_restarts"] == 0  # seqs went on: no restart from 0
    # Episode indices (and so seeds: episode k is seeded seed + k) continue, none used twice.
    assert _episodes(run_dir) == [0, 1, 2, 3, 4, 5]
    saved = json.loads((run_dir / "run_settings.json").read_text())["settings"]
    assert saved["steps"] == 2 * STEPS and saved["presample_steps"] == PRESAMPLE


def test_saved_settings_apply_and_contradictions_are_refused(tmp_path):
    from porl_ros import runner

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = runner.build_parser().parse_args(["--steps", "3000", "--presample-steps", "500", "--seed", "4"])
    runner.save_run_settings(run_dir, args)

    argv = ["--resume", "--run-dir", str(run_dir)]
    resumed = runner.build_parser().parse_args(argv)
    runner.apply_saved_settings(run_dir, resumed, runner.explicit_options(argv))
    assert (resumed.steps, resumed.presample_steps, resumed.seed) == (3000, 500, 4)

    argv = ["--resume", "--run-dir", str(run_dir), "--steps", "8000"]
    with pytest.raises(SystemExit, match=r"--steps 8000 contradicts .*--steps 3000.*--override steps"):
        runner.apply_saved_settings(run_dir, runner.build_parser().parse_args(argv), runner.explicit_options(argv))
    argv = ["--resume", "--run-dir", str(run_dir), "--seed", "4"]  # repeating the same value is fine
    runner.apply_saved_settings(run_dir, runner.build_parser().parse_args(argv), runner.explicit_options(argv))
    argv = ["--resume", "--run-dir", str(run_dir), "--steps", "8000", "--override", "steps"]
    overridden = runner.build_parser().parse_args(argv)
    runner.apply_saved_settings(run_dir, overridden, runner.explicit_options(argv))
    assert (overridden.steps, overridden.presample_steps) == (8000, 500)
    with pytest.raises(SystemExit, match="--override: only with --resume"):
        runner.main(["--override", "steps", "--run-dir", str(run_dir)])


def test_bridge_positions_read_checkpoint_and_log(tmp_path):
    import numpy as np

    store = LearnerStateStore(tmp_path / "state", 2, 1)
    store.start_segment()
    for seq, (episode, step) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]):
        store.log_transition(LoggedTransition(0, seq, episode, step, np.zeros(2), np.zeros(1), 0.0, np.zeros(2),
                                              False, False, False))
    store.log_transition(LoggedTransition(1, 7, 4, 0, np.zeros(2), np.zeros(1), 0.0, np.zeros(2),
                                          False, False, False))
    store.close()
    assert bridge_positions(tmp_path / "state") == {0: (5, 3), 1: (8, 5)}
    assert bridge_positions(tmp_path / "nothing") == {}


def test_interrupted_run_resumes_with_its_counters_and_new_episodes(tmp_path, checkpoint):
    """The issue's case: stop a run midway (Ctrl-C of porl-ros run), resume it without repeating
    any option: its T and total are kept, updates go on from the saved count, and no episode index
    (so no episode seed) is used twice."""
    import signal

    total = 1000  # long enough that the Ctrl-C always lands mid-run, also on a fast idle machine
    run_dir = tmp_path / "run"
    cmd = run_command(checkpoint, run_dir, "--episode-steps", str(EPISODE), "--steps", str(total),
                      "--presample-steps", str(PRESAMPLE), params=PARAMS)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    metrics = run_dir / "learner" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out[-3000:]
    store = LearnerStateStore(run_dir / "learner" / "state", 0, 0)
    stopped_at = json.loads((store.checkpoints()[0] / "checkpoint.json").read_text().split("\n", 1)[1])
    steps_before = stopped_at["bookkeeping"]["env_steps"]
    assert 0 < steps_before < total

    resumed = subprocess.run([*run_command(checkpoint, run_dir), "--resume"], capture_output=True, text=True,
                             timeout=240, start_new_session=True)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    summary = json.loads((run_dir / "learner" / "learner_summary.json").read_text())
    assert summary["env_steps"] == total  # the saved --steps, not the profile's
    assert summary["gradient_updates"] == UTD * (total - STARTS + 1)  # counted on, not from 0
    assert summary["bridge_restarts"] == 0
    episodes = _episodes(run_dir)
    assert episodes == sorted(set(episodes)), f"an episode index was used twice: {episodes}"
