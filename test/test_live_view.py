"""The live view: the recorder serves the run's topics over the Foxglove WebSocket protocol;
a plain client (websocket-client) subscribes to every advertised channel and decodes a
message of each kind with the advertised ros2msg schema.

The client offers both names of the protocol: `foxglove.websocket.v1` (the original) and
`foxglove.sdk.v1`, the only one foxglove-sdk 0.30's server accepts (same JSON/binary ops)."""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

import rclpy
import websocket
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mcap.records import Schema
from mcap_ros2.decoder import DecoderFactory
from rclpy.qos import QoSProfile
from sensor_msgs.msg import JointState

from porl_ros import graph
from porl_ros.nodes.qos import LATCHED_QOS, STATUS_QOS, STREAM_QOS
from porl_ros.nodes.visualization import VIZ_QOS, build_markers
from porl_ros.tools.foxglove_layout import LAYOUT_FILE, layout_text
from porl_ros_interfaces.msg import Action, Observation, PolicyWeights, TrainingStatus, Transition
from process_helpers import ProcessGroup

SUBPROTOCOLS = ["foxglove.websocket.v1", "foxglove.sdk.v1"]
MESSAGE_DATA = 0x01  # binary opcode of a message on a subscription


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _messages() -> dict[str, tuple[type, QoSProfile, object]]:
    markers = build_markers("world", rclpy.time.Time().to_msg(), {"end_effector": [0.1, 0.2, 0.3], "goal": [0, 0, 0]},
                            action=[1.0, 0.0, 0.0, 0.0], success_flash=True, text="episode 1")
    return {
        "/" + graph.OBSERVATION_TOPIC: (Observation, STREAM_QOS, Observation(episode=1, step=2, state=[0.5] * 39)),
        "/" + graph.ACTION_TOPIC: (Action, STREAM_QOS, Action(episode=1, step=2, action=[0.25] * 4)),
        "/" + graph.SIM_JOINT_STATES_TOPIC: (JointState, VIZ_QOS, JointState(name=["right_j0"], position=[0.7])),
        graph.TRANSITION_TOPIC: (Transition, STREAM_QOS, Transition(seq=5, reward=1.5, state=[0.0] * 39)),
        graph.STATUS_TOPIC: (TrainingStatus, STATUS_QOS, TrainingStatus(phase="finetune", success_rate=0.75)),
        graph.MARKERS_TOPIC: (type(markers), VIZ_QOS, markers),
        graph.DIAGNOSTICS_TOPIC: (DiagnosticArray, STATUS_QOS, DiagnosticArray(
            status=[DiagnosticStatus(level=b"\x01", name="porl/learner", message="stalled")])),
        graph.WEIGHTS_TOPIC: (PolicyWeights, LATCHED_QOS, PolicyWeights(version=7, format="safetensors",
                                                                        data=bytes(5000))),
    }


def test_foxglove_client_decodes_every_recorded_topic(tmp_path):
    port = _free_port()
    group = ProcessGroup()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("live_view_test_publisher", context=context)
    stop = threading.Event()
    client = None
    try:
        group.start([sys.executable, "-m", "porl_ros.nodes.recorder", "--ros-args", "-p", "record:=false",
                     "-p", f"foxglove_port:={port}", "-p", "diagnostics_rate_hz:=0.0"],
                    log_path=tmp_path / "recorder.log")
        sent = _messages()
        publishers = {topic: (node.create_publisher(cls, topic, qos), msg) for topic, (cls, qos, msg) in sent.items()}

        def publish() -> None:
            while not stop.is_set():
                for publisher, msg in publishers.values():
                    publisher.publish(msg)
                time.sleep(0.1)

        deadline = time.monotonic() + 60
        while client is None and time.monotonic() < deadline:
            try:
                client = websocket.create_connection(f"ws://127.0.0.1:{port}", subprotocols=SUBPROTOCOLS, timeout=5)
            except OSError:
                time.sleep(0.2)
        assert client is not None, (tmp_path / "recorder.log").read_text()
        assert client.getsubprotocol() in SUBPROTOCOLS, client.getsubprotocol()
        channels = {}
        deadline = time.monotonic() + 30
        expected = {graph.WEIGHTS_VERSION_TOPIC if t == graph.WEIGHTS_TOPIC else t for t in sent}
        while {c["topic"] for c in channels.values()} != expected and time.monotonic() < deadline:
            frame = client.recv()
            if isinstance(frame, str):
                op = json.loads(frame)
                if op["op"] == "advertise":
                    channels.update({c["id"]: c for c in op["channels"]})
        assert {c["topic"] for c in channels.values()} == expected
        assert {(c["encoding"], c["schemaEncoding"]) for c in channels.values()} == {("cdr", "ros2msg")}
        subscriptions = {index: channel for index, channel in enumerate(channels.values(), start=1)}
        client.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": index, "channelId": channel["id"]} for index, channel in subscriptions.items()]}))
        threading.Thread(target=publish, daemon=True).start()
        factory, decoded = DecoderFactory(), {}
        deadline = time.monotonic() + 60
        while len(decoded) < len(subscriptions) and time.monotonic() < deadline:
            frame = client.recv()
            if isinstance(frame, str) or frame[0] != MESSAGE_DATA:
                continue
            subscription, _log_time = struct.unpack_from("<IQ", frame, 1)
            channel = subscriptions[subscription]
            if channel["topic"] in decoded:
                continue
            schema = Schema(id=channel["id"], name=channel["schemaName"], encoding=channel["schemaEncoding"],
                            data=channel["schema"].encode())
            decoded[channel["topic"]] = factory.decoder_for("cdr", schema)(bytes(frame[13:]))
    finally:
        stop.set()
        if client is not None:
            client.close()
        node.destroy_node()
        context.try_shutdown()
        group.close()
    assert set(decoded) == expected, f"no message on {expected - set(decoded)}"
    assert list(decoded["/" + graph.OBSERVATION_TOPIC].state) == [0.5] * 39
    assert decoded[graph.STATUS_TOPIC].phase == "finetune" and abs(decoded[graph.STATUS_TOPIC].success_rate - 0.75) < 1e-6
    assert [m.ns for m in decoded[graph.MARKERS_TOPIC].markers] == ["end_effector", "goal", "action", "success",
                                                                     "info"]
    assert decoded[graph.DIAGNOSTICS_TOPIC].status[0].message == "stalled"
    weights = decoded[graph.WEIGHTS_VERSION_TOPIC]
    assert (weights.version, weights.format, len(weights.data)) == (7, "safetensors", 0)
    assert decoded[graph.TRANSITION_TOPIC].seq == 5 and decoded["/" + graph.SIM_JOINT_STATES_TOPIC].position == [0.7]


def test_shipped_foxglove_layout_is_the_generated_one():
    assert LAYOUT_FILE.read_text() == layout_text(), \
        "config/foxglove_layout.json is stale: scripts/porl-env python -m porl_ros.tools.foxglove_layout"
    layout = json.loads(LAYOUT_FILE.read_text())
    text = json.dumps(layout)
    for topic in (graph.MARKERS_TOPIC, graph.STATUS_TOPIC, graph.DIAGNOSTICS_TOPIC):
        assert topic in text


def test_recorder_refuses_a_busy_port_naming_the_parameter(tmp_path):
    group = ProcessGroup()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            proc = group.start([sys.executable, "-m", "porl_ros.nodes.recorder", "--ros-args", "-p", "record:=false",
                                "-p", f"foxglove_port:={port}"], log_path=tmp_path / "recorder.log")
            code = proc.wait(60)
        finally:
            group.close()
    assert code == 2 and "foxglove_port" in (tmp_path / "recorder.log").read_text()
