"""Recorder: the run's bag and its live view.

Subscribes to the graph's topics (graph.recorded_topics) with serialized subscriptions, so
each message is stored as the CDR bytes that arrived, never deserialised: into the bag
(porl_ros.monitoring.bag, a rosbag2-compatible MCAP directory) and, with foxglove_port set,
to Foxglove clients (porl_ros.monitoring.live). The weights are kept as version events: the
PolicyWeights message without its blob, on graph.WEIGHTS_VERSION_TOPIC.

    ros2 run porl_ros recorder --ros-args -p bag_dir:=runs/x/bag -p foxglove_port:=8765

Ctrl-C / SIGTERM closes the bag (summary + footer); a killed recorder leaves a bag that
reads up to the last chunk written.
"""

from __future__ import annotations

import importlib
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message

from porl_ros import graph
from porl_ros.nodes.diagnostics import Health, NodeDiagnostics, RateMeter
from porl_ros.nodes.params import ParameterError, as_dict, declare_settings, run_node
from porl_ros.nodes.qos import LATCHED_QOS

SUBSCRIPTION_QOS = {
    graph.RELIABLE: QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.VOLATILE),
    # Best effort matches reliable and best-effort publishers alike.
    graph.BEST_EFFORT: QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                                  reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE),
    graph.LATCHED: LATCHED_QOS,
}
# rosbag2's offered_qos_profiles for `ros2 bag play` (the publishers' own QoS), per kind.
_QOS_YAML = "- history: 1\n  depth: {depth}\n  reliability: {reliability}\n  durability: {durability}\n" \
            "  deadline:\n    sec: 9223372036\n    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n" \
            "    nsec: 854775807\n  liveliness: 1\n  liveliness_lease_duration:\n    sec: 9223372036\n" \
            "    nsec: 854775807\n  avoid_ros_namespace_conventions: false\n"
OFFERED_QOS = {graph.RELIABLE: _QOS_YAML.format(depth=1000, reliability=1, durability=2),
               graph.BEST_EFFORT: _QOS_YAML.format(depth=10, reliability=2, durability=2),
               graph.LATCHED: _QOS_YAML.format(depth=1, reliability=1, durability=1)}
# The sim bridge publishes markers and joint states reliably (rviz subscribes reliably), although
# the recorder takes them best effort: replayed, they must match rviz again.
VIZ_OFFERED_QOS = _QOS_YAML.format(depth=5, reliability=1, durability=2)


def offered_qos(topic: str, kind: str) -> str:
    """rosbag2's offered_qos_profiles of a recorded topic: what its publisher offers."""
    if topic == graph.MARKERS_TOPIC or topic.endswith("/" + graph.SIM_JOINT_STATES_TOPIC):
        return VIZ_OFFERED_QOS
    return OFFERED_QOS[kind]


def message_class(type_name: str):
    """'pkg/msg/Name' -> the generated Python class."""
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class Recorder(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(graph.RECORDER, **node_kwargs)
        self.p = as_dict(*declare_settings(self, graph.RECORDER))
        self.bag = None
        self.live = None
        self.meter = RateMeter()
        self.errors = 0
        self.last_error = ""
        topics = graph.recorded_topics(self.p["num_bridges"], self.p["bridge"])
        if self.p["record"]:
            from porl_ros.monitoring.bag import BagWriter
            try:
                self.bag = BagWriter(self.p["bag_dir"], chunk_size=self.p["chunk_size_kib"] * 1024,
                                     chunk_period_s=self.p["chunk_period_s"])
            except OSError as e:
                raise ParameterError(f"parameter 'bag_dir': cannot write a bag there: {e}") from None
        if self.p["foxglove_port"]:
            from porl_ros.monitoring.live import LiveServer
            self.live = LiveServer(self.p["foxglove_port"], self.p["foxglove_host"])
        for topic, type_name, kind in topics:
            stored = graph.WEIGHTS_VERSION_TOPIC if topic == graph.WEIGHTS_TOPIC else topic
            if self.bag is not None:
                self.bag.add_topic(stored, type_name, offered_qos(topic, kind))
            if self.live is not None:
                self.live.add_topic(stored, type_name)
            if topic == graph.WEIGHTS_TOPIC:  # deserialised, to drop the blob
                self.create_subscription(message_class(type_name), topic, self._on_weights, SUBSCRIPTION_QOS[kind])
            else:
                self.create_subscription(message_class(type_name), topic,
                                         lambda data, name=topic: self._store(name, data),
                                         SUBSCRIPTION_QOS[kind], raw=True)
        if self.live is not None:  # every channel declared first: clients see them all at once
            try:
                self.live.start()
            except (OSError, RuntimeError) as e:  # foxglove-sdk: RuntimeError "Failed to bind port: ..."
                self.close()
                raise ParameterError(f"parameter 'foxglove_port'/'foxglove_host': {e}") from None
        if self.bag is not None:
            self.create_timer(0.5, self.bag.tick)
            self.get_logger().info(f"recording {len(topics)} topics into {self.bag.path}")
        if self.live is not None:
            self.get_logger().info(f"Foxglove live view on ws://{self.p['foxglove_host']}:{self.live.port}")
        self.diagnostics = NodeDiagnostics(self, self._health, self.p["diagnostics_rate_hz"])

    def _store(self, topic: str, data: bytes) -> None:
        now = time.time_ns()
        try:
            if self.bag is not None:
                self.bag.write(topic, data, now)
            if self.live is not None:
                self.live.log(topic, data, now)
        except Exception as e:  # a full disk must not take the run down; diagnostics say so
            self.errors += 1
            self.last_error = f"{type(e).__name__}: {e}"
        self.meter.tick()

    def _on_weights(self, msg) -> None:
        msg.data = []
        self._store(graph.WEIGHTS_VERSION_TOPIC, serialize_message(msg))

    def _health(self) -> Health:
        values = {"messages_per_second": self.meter.rate(), "messages": self.meter.count, "errors": self.errors,
                  "recording": str(self.bag.path) if self.bag else "off",
                  "foxglove": f"{self.p['foxglove_host']}:{self.live.port}" if self.live else "off"}
        if self.bag is not None:
            values["bytes_recorded"] = self.bag.bytes_in
        health = Health(message="recording" if self.bag else "live view only", values=values)
        if self.errors:
            health.error(f"{self.errors} messages not stored; last: {self.last_error}")
        return health

    def close(self) -> None:
        if self.bag is not None and not self.bag.closed:
            self.bag.close()
            # print, not the ROS logger: after Ctrl-C the context (and /rosout) is already shut down
            print(f"[recorder] bag closed: {self.bag.messages} messages in {self.bag.path}", flush=True)
        if self.live is not None:
            self.live.close()
            self.live = None


def main(args=None) -> int:
    return run_node(Recorder, args)


if __name__ == "__main__":
    raise SystemExit(main())
