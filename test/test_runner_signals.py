"""`porl-ros run` and the end of its nodes, over real processes and DDS: SIGTERM / SIGHUP
stop the whole graph as Ctrl-C does (no orphaned node, the learner's state saved); a
required node that ends with exit 0 while the learner still waits ends the run as a
clearly reported failure; a SIGKILLed node is reported by its signal's name, with its own
last log lines."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from graph_helpers import SMALL_LEARNER, random_actor_checkpoint, run_command
from porl_ros.core.learner_state import LearnerStateStore
from process_helpers import wait_until

OBS, ACT = 39, 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


def _node_pids(checkpoint: str) -> dict[int, str]:
    """Running porl_ros node processes started with this test's checkpoint: pid -> module."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        modules = [a for a in args if a.startswith("porl_ros.nodes.")]
        if modules and any(checkpoint in a for a in args):
            found[int(entry.name)] = modules[0]
    return found


def _stepping(tmp_path: Path) -> bool:
    """The whole graph is up and stepping: the bridge has finished its first episode."""
    log = tmp_path / "run" / "logs" / "sim_bridge.log"
    return log.is_file() and "episode 0:" in log.read_text()


def _start(tmp_path: Path, checkpoint: str, *extra: str, params=()) -> subprocess.Popen:
    cmd = run_command(checkpoint, tmp_path / "run", "--steps", "100000", "--episode-steps", "100", *extra,
                      params=[*SMALL_LEARNER, *params])
    return subprocess.Popen(cmd, stdout=open(tmp_path / "runner.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _cleanup(runner: subprocess.Popen, checkpoint: str) -> None:
    if runner.poll() is None:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(10)
    for pid in _node_pids(checkpoint):  # never leave a node behind, whatever the test saw
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass



@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_stops_the_graph_like_ctrl_c(tmp_path, checkpoint, sig):
    runner = _start(tmp_path, checkpoint)
    try:
        assert wait_until(lambda: _stepping(tmp_path), 120), (tmp_path / "runner.log").read_text()
        assert len(_node_pids(checkpoint)) == 4
        os.kill(runner.pid, sig)
        code = runner.wait(60)
        out = (tmp_path / "runner.log").read_text()
        assert code == 128 + sig, out
        assert f"stopped by {signal.Signals(sig).name}" in out
        assert wait_until(lambda: not _node_pids(checkpoint), 10), f"orphaned nodes: {_node_pids(checkpoint)}"
        store = LearnerStateStore(tmp_path / "run" / "learner" / "state", OBS, ACT)
        assert store.checkpoints(), "the learner did not save its state as on Ctrl-C"
    finally:
        _cleanup(runner, checkpoint)


def test_a_bridge_that_exits_0_while_the_learner_waits_fails_the_run(tmp_path, checkpoint):
    # The bridge stops after 50 steps (exit 0); the learner wants 100000 and would wait forever.
    runner = _start(tmp_path, checkpoint, params=["sim_bridge:max_env_steps:=50"])
    try:
        code = runner.wait(120)
        out = (tmp_path / "runner.log").read_text()
        assert code == 1, out
        assert "node sim_bridge ended (exit 0) while the run was still going" in out, out
        assert wait_until(lambda: not _node_pids(checkpoint), 10), f"orphaned nodes: {_node_pids(checkpoint)}"
    finally:
        _cleanup(runner, checkpoint)


def test_a_sigkilled_node_is_reported_by_signal_name_with_its_own_log(tmp_path, checkpoint):
    runner = _start(tmp_path, checkpoint)
    try:
        assert wait_until(lambda: _stepping(tmp_path), 120), (tmp_path / "runner.log").read_text()
        pid = next(p for p, module in _node_pids(checkpoint).items() if module.endswith("policy_server"))
        os.kill(pid, signal.SIGKILL)
        code = runner.wait(60)
        out = (tmp_path / "runner.log").read_text()
        assert code == 1, out
        assert "node policy_server was killed by SIGKILL" in out and "exit -9" not in out, out
        own_lines = (tmp_path / "run" / "logs" / "policy_server.log").read_text().strip().splitlines()[-5:]
        report = out[out.index("node policy_server was killed"):]
        assert all(line in report for line in own_lines), (own_lines, report)
        assert wait_until(lambda: not _node_pids(checkpoint), 10), f"orphaned nodes: {_node_pids(checkpoint)}"
    finally:
        _cleanup(runner, checkpoint)


def test_stopping_the_graph_signals_each_node_once(tmp_path):
    """A node takes a second SIGINT as 'cut the orderly stop short' (a learner would break off its
    update block or its final checkpoint): the runner's stop sends one, then only waits."""
    import sys
    import time

    from porl_ros.runner import _signal_group, _wait_or_kill

    counted = tmp_path / "signals"
    node = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        "seen = []\n"
        "signal.signal(signal.SIGINT, lambda *a: seen.append(1))\n"
        "print('ready', flush=True)\n"
        "while not seen: time.sleep(0.01)\n"
        "time.sleep(1.0)  # the orderly stop: a second signal would arrive now\n"
        f"open({str(counted)!r}, 'w').write(str(len(seen)))\n")],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert node.stdout.readline().strip() == "ready"
        _signal_group(node, signal.SIGINT)
        started = time.monotonic()
        _wait_or_kill(node, 10.0)
        assert node.returncode == 0 and time.monotonic() - started < 9.0
        assert counted.read_text() == "1"
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
