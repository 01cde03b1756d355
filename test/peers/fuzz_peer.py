"""A separate OS process that sends random, well-formed messages of every type the graph
uses into the default /porl topics for a bounded time, then prints what it sent as JSON:
  python fuzz_peer.py SECONDS SEED
Fields are random (sizes, values including NaN/inf/huge, ids, sequence numbers, phases,
bytes). Deliberately absent: forged messages that are valid in every field (phase 'done',
the real bridge's next seq or episode/step), which no validation can tell from real ones
(docs/security.md)."""

import json
import string
import sys
import time

import numpy as np
import rclpy

from porl_ros.nodes.conversions import to_float32_field, to_uint8_field
from porl_ros.nodes.qos import LATCHED_QOS, STATUS_QOS, STREAM_QOS
from porl_ros_interfaces.msg import Action, Observation, PolicyWeights, TrainingStatus, Transition, TransitionAck
from porl_ros_interfaces.srv import GetAction

U32, U64 = 2**32, 2**64


def main() -> int:
    seconds, seed = float(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(seed)
    rclpy.init()
    node = rclpy.create_node("porl_fuzz_peer")
    pubs = {
        "observation": node.create_publisher(Observation, "/porl/observation", STREAM_QOS),
        "action": node.create_publisher(Action, "/porl/action", STREAM_QOS),
        "transition": node.create_publisher(Transition, "/porl/transition", STREAM_QOS),
        "ack": node.create_publisher(TransitionAck, "/porl/transition_ack", STREAM_QOS),
        "status": node.create_publisher(TrainingStatus, "/porl/status", STATUS_QOS),
        "weights": node.create_publisher(PolicyWeights, "/porl/policy_weights", LATCHED_QOS),
    }
    client = node.create_client(GetAction, "/porl/get_action")
    sent = dict.fromkeys([*pubs, "get_action", "get_action_answered"], 0)

    def floats():
        size = int(rng.choice([0, 1, 4, 39, 40, int(rng.integers(0, 5000))]))
        values = rng.normal(0, 10.0 ** rng.integers(-3, 39), size)
        mask = rng.random(size)
        values[mask < 0.05] = np.nan
        values[(mask >= 0.05) & (mask < 0.1)] = np.inf
        return to_float32_field(np.clip(values, -3e38, 3e38))

    def text():
        return "".join(rng.choice(list(string.printable), int(rng.integers(0, 30))))

    def phase():
        return str(rng.choice(["presample", "finetune", "", "DONE ", "finetune\0", text()]))

    def uid(bits):  # a random id or number, never the small values a real peer uses
        return int(rng.integers(1000, bits - 1, dtype=np.uint64)) if bits == U64 else int(rng.integers(1000, bits))

    def answered(future):
        if future.result() is not None:
            sent["get_action_answered"] += 1

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kind = str(rng.choice([*pubs, "get_action"], p=[0.2, 0.2, 0.25, 0.1, 0.1, 0.03, 0.12]))
        if kind == "observation":
            m = Observation(bridge_id=uid(U32), episode=uid(U64), step=uid(U32), required_policy_version=uid(U64),
                            phase=phase())
            m.state = floats()
        elif kind == "action":
            m = Action(bridge_id=int(rng.choice([0, uid(U32)])), episode=uid(U64), step=uid(U32),
                       exploratory=bool(rng.integers(2)), policy_version=uid(U64))
            m.action = floats()
        elif kind == "transition":
            m = Transition(bridge_id=int(rng.choice([0, uid(U32)])), seq=uid(U64), episode=uid(U64), step=uid(U32),
                           reward=float(rng.choice([rng.normal(), np.nan, np.inf, 1e30])),
                           terminated=bool(rng.integers(2)), truncated=bool(rng.integers(2)),
                           success=bool(rng.integers(2)), exploratory=bool(rng.integers(2)),
                           policy_version=uid(U64))
            m.state, m.action, m.next_state = floats(), floats(), floats()
        elif kind == "ack":
            m = TransitionAck(bridge_id=int(rng.choice([0, uid(U32)])), seq=uid(U64), policy_version=uid(U64),
                              phase=phase())
        elif kind == "status":
            m = TrainingStatus(phase=phase(), env_steps=uid(U64), policy_version=uid(U64),
                               success_rate=float(rng.normal()), effective_utd=float(rng.choice([np.nan, 1.0])))
        elif kind == "weights":
            m = PolicyWeights(version=uid(U64), format=str(rng.choice(["safetensors", text()])))
            m.data = to_uint8_field(rng.bytes(int(rng.integers(0, 20000))))
        if kind == "get_action":
            if client.service_is_ready():
                request = GetAction.Request(deterministic=bool(rng.integers(2)),
                                            min_policy_version=int(rng.choice([0, uid(U64)])))
                request.state = floats()
                client.call_async(request).add_done_callback(answered)
                sent[kind] += 1
        else:
            pubs[kind].publish(m)
            sent[kind] += 1
        rclpy.spin_once(node, timeout_sec=0.005)
    print(json.dumps(sent), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
