"""A separate OS process for the interface round-trip test: echoes every porl_ros
message type from /porl_test/in/<Type> to /porl_test/out/<Type> and serves GetAction
(action = 2 * state) on /porl_test/get_action. Exits on SIGINT/SIGTERM."""

import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException

from porl_ros.nodes.qos import LATCHED_QOS, STREAM_QOS
from porl_ros_interfaces import msg
from porl_ros_interfaces.srv import GetAction

TYPES = ["Observation", "Action", "Transition", "TransitionAck", "TrainingStatus", "PolicyWeights"]


def main() -> int:
    rclpy.init()
    node = rclpy.create_node("porl_test_echo")
    keep = []
    for name in TYPES:
        cls = getattr(msg, name)
        qos = LATCHED_QOS if name == "PolicyWeights" else STREAM_QOS
        pub = node.create_publisher(cls, f"/porl_test/out/{name}", qos)
        keep.append(node.create_subscription(cls, f"/porl_test/in/{name}", pub.publish, qos))

    def serve(request, response):
        response.action = [2.0 * v for v in request.state]
        response.policy_version = 7
        response.ok = True
        return response

    keep.append(node.create_service(GetAction, "/porl_test/get_action", serve))
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    print("echo peer ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
