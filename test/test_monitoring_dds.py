"""Monitoring over real DDS: rviz markers and joint states from the bridge, diagnostics
from every node type, and the report a `porl-ros run` leaves behind."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from visualization_msgs.msg import Marker, MarkerArray

from graph_helpers import ENV_ID, ObserverNode, random_actor_checkpoint, run_command
from porl_ros.nodes.diagnostics import (DIAGNOSTICS_QOS, ERROR, OK, WARN, Health, NodeDiagnostics,
                                        learner_health)
from porl_ros.nodes.visualization import EXPLORATORY_COLOR, POLICY_COLOR, VIZ_QOS, build_markers
from process_helpers import ProcessGroup, wait_until
from test_monitoring_report import png_size

FRAME = "porl_test_frame"
VIZ_RATE_HZ = 20.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


class MonitorObserver(ObserverNode):
    """Records /porl/markers, /porl/joint_states and /diagnostics."""

    def __init__(self) -> None:
        super().__init__("porl_test_monitor")
        self.markers: list[MarkerArray] = []
        self.joint_states: list[JointState] = []
        self.diagnostics: dict[str, list] = {}  # status name -> statuses
        self.node.create_subscription(MarkerArray, "/porl/markers", self.markers.append, VIZ_QOS)
        self.node.create_subscription(JointState, "/porl/joint_states", self.joint_states.append, VIZ_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, DIAGNOSTICS_QOS)
        self.start()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics.setdefault(status.name, []).append(status)

    def statuses(self, node_name: str) -> list:
        return [s for name, items in self.diagnostics.items() if name.endswith(node_name) for s in items]


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _level(status) -> int:
    return status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def test_run_publishes_markers_joint_states_diagnostics_and_leaves_a_report(tmp_path, checkpoint):
    run_dir = tmp_path / "run"
    steps, presample = 300, 150
    params = ["learner:n_critics:=2", "learner:critic_hidden:=[32, 32]", "learner:batch_size:=16",
              "learner:learning_starts:=16", "learner:utd_ratio:=1", "learner:torch_threads:=1",
              "learner:checkpoint_every_env_steps:=0", f"sim_bridge:frame_id:={FRAME}",
              f"sim_bridge:viz_rate_hz:={VIZ_RATE_HZ}",
              # Coin-flip exploration in both stages: every arrow sample may have either color.
              "exploration_controller:presample_epsilon:=0.5", "exploration_controller:presample_epsilon_end:=0.5",
              "exploration_controller:finetune_epsilon:=0.5", "exploration_controller:finetune_epsilon_end:=0.5"]
    cmd = run_command(checkpoint, run_dir, "--episode-steps", "50", "--steps", str(steps),
                      "--presample-steps", str(presample), params=params)
    observer = MonitorObserver()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, start_new_session=True)
        time.sleep(0.3)
    finally:
        observer.close()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # rviz markers: in the configured frame, one namespace per thing, prefixed by the bridge.
    assert observer.markers, "no MarkerArray on /porl/markers"
    markers = [m for array in observer.markers for m in array.markers]
    assert {m.header.frame_id for m in markers} == {FRAME}
    namespaces = {m.ns for m in markers}
    assert {"bridge_0/end_effector", "bridge_0/goal", "bridge_0/action", "bridge_0/info"} <= namespaces
    for sphere in (m for m in markers if m.ns == "bridge_0/end_effector"):
        assert sphere.type == Marker.SPHERE and math.isfinite(sphere.pose.position.x)
    arrows = [m for m in markers if m.ns == "bridge_0/action"]
    assert all(a.type == Marker.ARROW and len(a.points) == 2 for a in arrows)
    colors = {(round(a.color.r, 3), round(a.color.g, 3), round(a.color.b, 3)) for a in arrows}
    expected = {tuple(round(c, 3) for c in EXPLORATORY_COLOR[:3]), tuple(round(c, 3) for c in POLICY_COLOR[:3])}
    assert colors == expected, f"arrow colors {colors}: both exploratory and policy actions were executed"
    # Published by a timer, not once per step.
    stamps = np.array([_stamp_s(array.markers[0].header.stamp) for array in observer.markers if array.markers])
    assert 0.5 / VIZ_RATE_HZ < np.median(np.diff(stamps)) < 2.0 / VIZ_RATE_HZ

    # Joint states of the Sawyer arm.
    assert observer.joint_states, "no JointState on /porl/joint_states"
    joints = observer.joint_states[-1]
    assert list(joints.name) == [f"right_j{i}" for i in range(7)] and joints.header.frame_id == FRAME
    assert len(joints.position) == 7 and all(math.isfinite(p) for p in joints.position)
    assert len({tuple(j.position) for j in observer.joint_states}) > 1, "the arm never moved"

    # Diagnostics from every node type of the bridge side, healthy while stepping.
    for node_name, keys in {"sim_bridge": {"steps_per_second", "rejected_actions", "awaiting_ack"},
                            "exploration_controller": {"actions_per_second", "rejected_observations",
                                                       "exploratory_fraction"},
                            "policy_server": {"requests_per_second", "seconds_since_last_weights",
                                              "rejected_weights"},
                            "learner": {"transitions_per_second", "seconds_since_last_weights", "replay_size",
                                        "seq_gaps"}}.items():
        statuses = observer.statuses(node_name)
        assert statuses, f"no diagnostics from {node_name}: {sorted(observer.diagnostics)}"
        assert keys <= set(_values(statuses[-1])), f"{node_name}: {_values(statuses[-1])}"
        assert any(_level(s) == OK for s in statuses), [s.message for s in statuses]
    busy = [s for s in observer.statuses("sim_bridge") if float(_values(s)["steps_per_second"]) > 0]
    assert busy, "sim_bridge never reported a step rate"
    versions = [int(_values(s)["policy_version"]) for s in observer.statuses("policy_server")]
    assert max(versions) > 0, "the policy server never reported new weights"

    # TensorBoard scalars from the learner.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir / "learner" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/critic_loss", "train/q_calibration_gap", "train/phase_finetune", "episode/return",
            "rate/updates_per_second", "update/q_std"} <= tags, tags
    assert [e.value for e in events.Scalars("train/phase_finetune")][-1] == 1.0

    # The end-of-run report.
    assert png_size(run_dir / "report.png") == (1000, 1000)
    report = json.loads((run_dir / "report.json").read_text())
    logged = (run_dir / "learner" / "metrics.jsonl").read_text().splitlines()
    assert report["episodes"] == len(logged) and report["episodes"] >= steps // 50 - 1
    assert report["presample_steps"] == presample and report["presample_steps_exact"]
    assert "[porl] report:" in result.stdout


def test_lone_nodes_report_what_they_miss(tmp_path, checkpoint):
    """Without peers each node says why it cannot work, at WARN or ERROR."""
    group = ProcessGroup()
    observer = MonitorObserver()
    try:
        module_params = {
            "porl_ros.nodes.policy_server": ["weights_topic:=/lonely/weights"],  # no checkpoint, no weights
            "porl_ros.nodes.exploration_controller": [f"checkpoint:={checkpoint}",
                                                      "get_action_service:=/lonely/get_action"],
            "porl_ros.nodes.sim_bridge": [f"env_id:={ENV_ID}", "observation_topic:=/lonely/observation",
                                          "transition_topic:=/lonely/transition", "diagnostics_rate_hz:=4.0"],
        }
        for module, params in module_params.items():
            args = [sys.executable, "-m", module, "--ros-args"]
            for p in params:
                args += ["-p", p]
            group.start(args, log_path=tmp_path / f"{module.rsplit('.', 1)[-1]}.log",
                        env={"OMP_NUM_THREADS": "1"})
        expected = {"policy_server": (ERROR, "no policy yet"),
                    "exploration_controller": (WARN, "not available"),
                    "sim_bridge": (WARN, "waiting for")}
        assert wait_until(lambda: all(observer.statuses(n) for n in expected), timeout=60), \
            f"diagnostics seen: {sorted(observer.diagnostics)}"
        for node_name, (level, words) in expected.items():
            status = observer.statuses(node_name)[-1]
            assert _level(status) == level and words in status.message, (node_name, status.message)
        # Markers are shown before the first step too (the reset pose), without an action arrow.
        assert wait_until(lambda: observer.markers, timeout=10)
        assert "bridge_0/action" not in {m.ns for m in observer.markers[-1].markers}
    finally:
        observer.close()
        group.close()


def test_diagnostics_helper_over_dds():
    """NodeDiagnostics publishes a check's Health; a check that raises reports ERROR."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("porl_test_diag_source", context=context)
    listener = rclpy.create_node("porl_test_diag_listener", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    received: list = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", lambda m: received.extend(m.status),
                                 DIAGNOSTICS_QOS)
    summary = {"phase": "finetune", "env_steps": 500, "episodes": 5, "gradient_updates": 900, "policy_version": 7,
               "replay_size": 500, "updates_per_second": 80.0, "env_steps_per_second": 40.0, "effective_utd": 2.0,
               "success_rate": 0.4, "q_calibration_gap": -1.5, "seq_gaps": 2, "rejected_transitions": 0}
    checks = iter([lambda: learner_health(summary, done=False, seconds_since_transition=30.0,
                                          seconds_since_weights=0.5, transitions_per_second=0.0),
                   lambda: 1 / 0])
    try:
        NodeDiagnostics(node, lambda: next(checks)(), rate_hz=10.0)
        mine = lambda: [s for s in received if s.name == "porl_ros: porl_test_diag_source"]  # noqa: E731
        assert wait_until(lambda: len(mine()) >= 2, timeout=10, spin=lambda t: executor.spin_once(timeout_sec=t))
        first, second = mine()[:2]
        assert _level(first) == WARN
        assert "no transition for 30 s" in first.message and "2 transition(s) missing" in first.message
        values = _values(first)
        assert values["seconds_since_last_weights"] == "0.5" and values["q_calibration_gap"] == "-1.5"
        assert values["done"] == "false"
        assert _level(second) == ERROR and "ZeroDivisionError" in second.message
    finally:
        executor.shutdown()
        node.destroy_node()
        listener.destroy_node()
        context.try_shutdown()


def test_marker_content():
    stamp = Time(sec=1)
    points = {"end_effector": np.array([0.1, 0.2, 0.3]), "goal": np.array([0.0, 0.5, 0.2]),
              "broken": np.array([np.nan, 0.0, 0.0])}
    array = build_markers("world", stamp, points, prefix="bridge_3/", action=np.array([1.0, 0.0, -1.0, 0.5]),
                          exploratory=True, arrow_scale=0.1, success_flash=True, text="episode 1")
    by_ns = {m.ns: m for m in array.markers}
    assert set(by_ns) == {"bridge_3/end_effector", "bridge_3/goal", "bridge_3/action", "bridge_3/success",
                          "bridge_3/info"}  # the NaN point is left out
    arrow = by_ns["bridge_3/action"]
    start, end = arrow.points
    assert (start.x, start.y, start.z) == pytest.approx((0.1, 0.2, 0.3))
    assert (end.x, end.y, end.z) == pytest.approx((0.2, 0.2, 0.2))
    assert (arrow.color.r, arrow.color.g, arrow.color.b) == pytest.approx(EXPLORATORY_COLOR[:3])
    flash = by_ns["bridge_3/success"]
    assert flash.pose.position.y == pytest.approx(0.5)  # at the goal
    assert flash.lifetime.sec + flash.lifetime.nanosec > 0  # rviz removes it by itself
    calm = build_markers("world", stamp, points, action=np.zeros(4), exploratory=False)
    by_ns = {m.ns: m for m in calm.markers}
    assert "success" not in by_ns and "info" not in by_ns
    assert (by_ns["action"].color.b) == pytest.approx(POLICY_COLOR[2])
    assert build_markers("world", stamp, {}, action=np.ones(4)).markers == []
    assert Health().level == OK


def test_rviz_config_shows_what_the_bridge_publishes():
    import yaml

    from porl_ros.nodes.settings import SimBridgeSettings

    defaults = SimBridgeSettings().to_dict()
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "porl.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == defaults["frame_id"] == "world"
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert displays["rviz_default_plugins/Grid"]["Enabled"]
    markers = displays["rviz_default_plugins/MarkerArray"]
    assert markers["Enabled"] and markers["Topic"]["Value"] == defaults["markers_topic"] == "/porl/markers"
    assert markers["Topic"]["Reliability Policy"] == "Reliable"  # matches VIZ_QOS
