"""The fine-tuning graph end to end, over real DDS, each node its own OS process.

An observer node in this test process watches the topics and probes the policy server
while `porl-ros run` drives the graph on the embedded simulator.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy

from graph_helpers import OBS_DIM, SMALL_LEARNER, ObserverNode, random_actor_checkpoint, run_command
from porl_ros import graph
from porl_ros.core.checkpoint import load_actor
from porl_ros.monitoring.bag import has_summary, iter_messages
from porl_ros.nodes.conversions import to_float32_field
from porl_ros.nodes.qos import STATUS_QOS, STREAM_QOS
from porl_ros_interfaces.msg import Action, TrainingStatus, Transition
from porl_ros_interfaces.srv import GetAction
from process_helpers import ProcessGroup

PROBE_STATE = np.linspace(-0.5, 0.5, OBS_DIM).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


class Observer(ObserverNode):
    """Records transitions, actions and status; probes GetAction with a fixed state."""

    def __init__(self) -> None:
        super().__init__("porl_test_observer")
        self.transitions: list[Transition] = []
        self.actions: list[Action] = []
        self.statuses: list[TrainingStatus] = []
        self.probes: list[tuple[int, np.ndarray]] = []
        self.node.create_subscription(Transition, "/porl/transition", self.transitions.append, STREAM_QOS)
        self.node.create_subscription(Action, "/porl/action", self.actions.append, STREAM_QOS)
        self.node.create_subscription(TrainingStatus, "/porl/status", self.statuses.append, STATUS_QOS)
        self.client = self.node.create_client(GetAction, "/porl/get_action")
        self.future = None
        self.node.create_timer(0.1, self._probe)
        self.start()

    def _probe(self) -> None:
        if self.future is not None and not self.future.done():
            return
        if not self.client.service_is_ready():
            return
        request = GetAction.Request(deterministic=True)
        request.state = to_float32_field(PROBE_STATE)
        self.future = self.client.call_async(request)
        self.future.add_done_callback(self._on_probe)

    def _on_probe(self, future) -> None:
        response = future.result()
        if response is not None and response.ok:
            phase = self.statuses[-1].phase if self.statuses else ""
            self.probes.append((response.policy_version, np.asarray(response.action, dtype=np.float32), phase))


def _run(tmp_path: Path, checkpoint: str, *extra: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, dict]:
    run_dir = tmp_path / "run"
    # The bridge waits for the observer too (learner, recorder unless --no-record, observer), so it
    # sees every step.
    subscribers = 2 if "--no-record" in extra else 3
    cmd = run_command(checkpoint, run_dir, "--episode-steps", "100",
                      "--param", f"sim_bridge:min_transition_subscribers:={subscribers}", *extra,
                      params=SMALL_LEARNER)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True)
    summary_file = run_dir / "learner" / "learner_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    return result, summary


def test_lockstep_run_goes_through_both_phases(tmp_path, checkpoint):
    observer = Observer()
    try:
        steps, presample, utd, starts = 400, 200, 2, 32
        result, summary = _run(tmp_path, checkpoint, "--steps", str(steps), "--presample-steps", str(presample),
                               "--param", f"learner:utd_ratio:={utd}", "--param", f"learner:presample_utd_ratio:={utd}",
                               "--eval-every", "200")
        time.sleep(0.5)
    finally:
        observer.close()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary["env_steps"] == steps
    # Lockstep: exactly UTD updates for every env step once the replay holds learning_starts.
    assert summary["gradient_updates"] == utd * (steps - starts + 1)
    assert summary["seq_gaps"] == 0 and summary["rejected_transitions"] == 0
    seqs = [t.seq for t in observer.transitions]
    assert seqs == list(range(steps)), "transitions missing, duplicated or out of order"
    # The actor is frozen in pre-sample: every action there comes from version 0.
    presample_versions = {t.policy_version for t in observer.transitions if t.seq < presample}
    assert presample_versions == {0}
    finetune_versions = [t.policy_version for t in observer.transitions if t.seq >= presample]
    assert finetune_versions == sorted(finetune_versions) and finetune_versions[-1] > 1
    # Served actions: identical to the checkpoint's while at version 0, different later.
    actor, _ = load_actor(checkpoint)
    offline = actor.act(PROBE_STATE, deterministic=True)
    v0 = [a for v, a, _ in observer.probes if v == 0]
    later = [a for v, a, _ in observer.probes if v > 1]
    assert v0 and later, f"probes: {[(v, p) for v, _, p in observer.probes]}"
    assert all(np.allclose(a, offline, atol=1e-6) for a in v0)
    assert not np.allclose(later[-1], offline, atol=1e-4)
    assert any(a.exploratory for a in observer.actions), "epsilon-greedy never explored in pre-sample"
    # The actor saved for evaluation off the control loop every --eval-every env steps.
    snapshots = sorted(p.name for p in (tmp_path / "run" / "learner" / "snapshots").iterdir())
    assert snapshots == ["step_00000200", "step_00000400"]
    assert load_actor(tmp_path / "run" / "learner" / "snapshots" / "step_00000400")[1].policy_version > 1
    # The run's bag (on by default): closed cleanly, every transition, the status and markers.
    bag = tmp_path / "run" / "bag"
    assert has_summary(bag / "bag_0.mcap") and (bag / "metadata.yaml").is_file()
    topics = collections.Counter(channel.topic for _, channel, _ in iter_messages(bag))
    assert topics[graph.TRANSITION_TOPIC] == steps and topics["/porl/observation"] >= steps
    assert topics[graph.STATUS_TOPIC] > 0 and topics[graph.MARKERS_TOPIC] > 0
    assert topics[graph.WEIGHTS_VERSION_TOPIC] > 1


def test_free_running_learner_slower_than_bridge_reports_effective_utd(tmp_path, checkpoint):
    steps, rate = 300, 50.0
    observer = Observer()
    try:
        started = time.monotonic()
        # A learner much bigger than the bridge's pace allows at UTD 16.
        result, summary = _run(tmp_path, checkpoint, "--steps", str(steps), "--presample-steps", "100",
                               "--timing-mode", "free_running", "--no-record",  # a timing bound: no extra process
                               "--param", "learner:n_critics:=10", "--param", "learner:critic_hidden:=[256, 256]",
                               "--param", "learner:batch_size:=256", "--param", "learner:learning_starts:=50",
                               "--param", f"sim_bridge:control_rate_hz:={rate}")
        elapsed = time.monotonic() - started
    finally:
        observer.close()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert summary["env_steps"] == steps
    # The bridge kept its own pace (no waiting for the learner), gap-free; it stops once
    # the learner's status says done, so a few transitions past the end are expected.
    seqs = [t.seq for t in observer.transitions]
    assert seqs[:steps] == list(range(steps)) and seqs == list(range(len(seqs)))
    assert summary["seq_gaps"] == 0
    assert elapsed < 60
    # The learner trained, at its own rate, and said so.
    assert summary["gradient_updates"] > 0
    reported = [s.effective_utd for s in observer.statuses if s.effective_utd > 0]
    assert reported, "no status reported an effective UTD"
    assert 0 < reported[-1] < 16


def test_policy_server_alone_answers_like_the_checkpoint(tmp_path, checkpoint):
    group = ProcessGroup()
    group.start([sys.executable, "-m", "porl_ros.nodes.policy_server", "--ros-args", "-p", f"checkpoint:={checkpoint}",
                 "-p", "get_action_service:=/deploy/get_action"], log_path=tmp_path / "policy_server.log")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("porl_test_client", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        client = node.create_client(GetAction, "/deploy/get_action")
        assert client.wait_for_service(timeout_sec=30), (tmp_path / "policy_server.log").read_text()
        actor, _ = load_actor(checkpoint)
        for state in (PROBE_STATE, -PROBE_STATE, np.zeros(39, np.float32)):
            request = GetAction.Request(deterministic=True)
            request.state = to_float32_field(state)
            future = client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=10)
            response = future.result()
            assert response.ok and response.policy_version == 0
            assert np.allclose(np.asarray(response.action), actor.act(state, deterministic=True), atol=1e-6)
        # A wrong-sized state is refused with a reason, and the server keeps serving.
        bad = GetAction.Request(deterministic=True)
        bad.state = to_float32_field(np.zeros(5))
        future = client.call_async(bad)
        executor.spin_until_future_complete(future, timeout_sec=10)
        assert not future.result().ok and "5 values, expected 39" in future.result().error
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        group.close()
