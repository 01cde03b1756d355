"""The run's bag: rosbag2-compatible MCAP (ros2msg schemas, CDR payloads, metadata.yaml),
readable after a SIGKILL up to the last chunk written, complete after a SIGINT."""

from __future__ import annotations

import signal
import sys
import time

import pytest
import rclpy
import yaml
from mcap.reader import make_reader
from rclpy.serialization import serialize_message

from porl_ros import graph
from porl_ros.monitoring.bag import BagWriter, has_summary, iter_messages, message_definition, read_messages
from porl_ros.nodes.qos import LATCHED_QOS, STATUS_QOS, STREAM_QOS
from porl_ros_interfaces.msg import PolicyWeights, TrainingStatus, Transition
from process_helpers import ProcessGroup, wait_until

TRANSITION = "porl_ros_interfaces/msg/Transition"
STATUS = "porl_ros_interfaces/msg/TrainingStatus"


def _transition(seq: int) -> Transition:
    msg = Transition(bridge_id=0, seq=seq, episode=seq // 10, step=seq % 10, reward=float(seq), success=seq % 7 == 0)
    msg.state = [0.1 * seq, 0.2, 0.3]
    msg.next_state = [0.1 * seq + 0.01, 0.2, 0.3]
    msg.action = [1.0, -1.0, 0.5, 0.0]
    return msg


def test_message_definition_appends_every_used_type_once():
    text = message_definition(TRANSITION)
    assert text.startswith("# One environment step")
    assert text.count("MSG: std_msgs/Header") == 1 and text.count("MSG: builtin_interfaces/Time") == 1
    markers = message_definition("visualization_msgs/msg/MarkerArray")
    for used in ("visualization_msgs/Marker", "geometry_msgs/Pose", "std_msgs/ColorRGBA",
                 "builtin_interfaces/Duration"):
        assert f"MSG: {used}\n" in markers


def test_bag_is_rosbag2_mcap_with_metadata(tmp_path):
    bag = BagWriter(tmp_path / "bag", chunk_size=4096)
    bag.add_topic(graph.TRANSITION_TOPIC, TRANSITION)
    bag.add_topic(graph.STATUS_TOPIC, STATUS)
    for seq in range(200):
        bag.write(graph.TRANSITION_TOPIC, serialize_message(_transition(seq)), 1_000_000_000 + seq * 1000)
    bag.write(graph.STATUS_TOPIC, serialize_message(TrainingStatus(phase="finetune", env_steps=200)), 1_000_300_000)
    bag.close()
    assert bag.path == tmp_path / "bag" / "bag_0.mcap"
    with open(bag.path, "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert summary.statistics.message_count == 201 and summary.statistics.chunk_count > 1
        assert {s.name: s.encoding for s in summary.schemas.values()} == {TRANSITION: "ros2msg", STATUS: "ros2msg"}
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
    decoded = [m for topic, _, m in read_messages(bag.dir, [graph.TRANSITION_TOPIC])]
    assert [m.seq for m in decoded] == list(range(200))
    assert decoded[13].reward == pytest.approx(13.0) and list(decoded[13].action) == [1.0, -1.0, 0.5, 0.0]
    info = yaml.safe_load((bag.dir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap" and info["relative_file_paths"] == ["bag_0.mcap"]
    assert info["message_count"] == 201
    counts = {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], t["message_count"])
              for t in info["topics_with_message_count"]}
    assert counts == {graph.TRANSITION_TOPIC: (TRANSITION, 200), graph.STATUS_TOPIC: (STATUS, 1)}
    # A second writer in the same directory (a resumed run) adds a file; the metadata lists both.
    again = BagWriter(tmp_path / "bag")
    again.add_topic(graph.STATUS_TOPIC, STATUS)
    again.write(graph.STATUS_TOPIC, serialize_message(TrainingStatus(phase="done")))
    again.close()
    info = yaml.safe_load((bag.dir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["relative_file_paths"] == ["bag_0.mcap", "bag_1.mcap"] and info["message_count"] == 202
    assert len(list(iter_messages(bag.dir))) == 202


# ------------------------------------------------------------------ the recorder node over DDS
class Publisher:
    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bag_test_publisher", context=self.context)
        self.transitions = self.node.create_publisher(Transition, graph.TRANSITION_TOPIC, STREAM_QOS)
        self.status = self.node.create_publisher(TrainingStatus, graph.STATUS_TOPIC, STATUS_QOS)
        self.weights = self.node.create_publisher(PolicyWeights, graph.WEIGHTS_TOPIC, LATCHED_QOS)

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


def _start_recorder(group: ProcessGroup, tmp_path, *params: str):
    args = [sys.executable, "-m", "porl_ros.nodes.recorder", "--ros-args", "-p", f"bag_dir:={tmp_path / 'bag'}",
            "-p", "chunk_size_kib:=4", "-p", "chunk_period_s:=0.3"]
    for param in params:
        args += ["-p", param]
    return group.start(args, log_path=tmp_path / "recorder.log")


def _record(tmp_path, sig: int, n: int = 300):
    group, pub = ProcessGroup(), Publisher()
    try:
        proc = _start_recorder(group, tmp_path)
        assert wait_until(lambda: pub.transitions.get_subscription_count() > 0, 30), \
            (tmp_path / "recorder.log").read_text()
        pub.weights.publish(PolicyWeights(version=3, format="safetensors", data=bytes(100_000)))
        for seq in range(n):
            pub.transitions.publish(_transition(seq))
            if seq % 50 == 0:
                pub.status.publish(TrainingStatus(phase="presample", env_steps=seq))
            time.sleep(0.002)
        # Everything published has reached the file once a chunk with the last seq is flushed.
        assert wait_until(lambda: n - 1 in [m.seq for _, _, m in read_messages(tmp_path / "bag", [
            graph.TRANSITION_TOPIC])], 20), (tmp_path / "recorder.log").read_text()
        code = group.stop(proc, sig)
    finally:
        pub.close()
        group.close()
    return code


def test_sigkilled_recorder_leaves_a_bag_that_reads_to_the_last_chunk(tmp_path):
    code = _record(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    path = tmp_path / "bag" / "bag_0.mcap"
    assert not has_summary(path)  # no footer: the process never got to close it
    seqs = [m.seq for _, _, m in read_messages(path, [graph.TRANSITION_TOPIC])]
    assert seqs == list(range(300))
    assert (tmp_path / "bag" / "metadata.yaml").is_file()


def test_sigint_closes_the_bag_with_summary_and_weight_versions_without_blob(tmp_path):
    code = _record(tmp_path, signal.SIGINT)
    assert code == 0
    path = tmp_path / "bag" / "bag_0.mcap"
    assert has_summary(path)
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    counts = {summary.channels[c].topic: k for c, k in summary.statistics.channel_message_counts.items()}
    assert counts[graph.TRANSITION_TOPIC] == 300 and counts[graph.STATUS_TOPIC] >= 1
    weights = [m for _, _, m in read_messages(path, [graph.WEIGHTS_VERSION_TOPIC])]
    assert [(w.version, w.format, len(w.data)) for w in weights] == [(3, "safetensors", 0)]
    info = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["message_count"] == sum(counts.values())
    # `ros2 bag play` offers each topic with its publisher's QoS: reliable markers (rviz
    # subscribes reliably), best-effort status, latched weight versions.
    offered = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])[0]
               for t in info["topics_with_message_count"]}
    assert offered[graph.MARKERS_TOPIC]["reliability"] == 1 and offered[graph.STATUS_TOPIC]["reliability"] == 2
    assert offered[graph.WEIGHTS_VERSION_TOPIC]["durability"] == 1
    assert offered[graph.TRANSITION_TOPIC] == {**offered[graph.TRANSITION_TOPIC], "reliability": 1, "depth": 1000}


def test_an_independent_rosbag2_reader_opens_the_bag(tmp_path):
    """rosbags (a pure-Python rosbag2 implementation, not built on mcap's) reads the bag
    directory through metadata.yaml and decodes the messages with the stored definitions."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    bag = BagWriter(tmp_path / "bag", chunk_size=2048)
    bag.add_topic(graph.TRANSITION_TOPIC, TRANSITION)
    bag.add_topic(graph.STATUS_TOPIC, STATUS)
    for seq in range(50):
        bag.write(graph.TRANSITION_TOPIC, serialize_message(_transition(seq)))
    bag.write(graph.STATUS_TOPIC, serialize_message(TrainingStatus(phase="finetune", env_steps=50)))
    bag.close()
    store = get_typestore(Stores.ROS2_JAZZY)
    with Reader(tmp_path / "bag") as reader:
        assert reader.message_count == 51
        assert {(c.topic, c.msgtype, c.msgcount) for c in reader.connections} == {
            (graph.TRANSITION_TOPIC, TRANSITION, 50), (graph.STATUS_TOPIC, STATUS, 1)}
        for connection in reader.connections:
            store.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
        seqs = [store.deserialize_cdr(raw, c.msgtype).seq for c, _, raw in reader.messages()
                if c.topic == graph.TRANSITION_TOPIC]
    assert seqs == list(range(50))
