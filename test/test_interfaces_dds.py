"""Every porl_ros message and the GetAction service cross real DDS between two OS
processes (this test and test/peers/echo_peer.py) and come back field for field."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import rclpy

from porl_ros.nodes.conversions import from_float32_field, from_uint8_field, to_float32_field, to_uint8_field
from porl_ros.nodes.qos import LATCHED_QOS, STREAM_QOS
from porl_ros_interfaces import msg
from porl_ros_interfaces.srv import GetAction
from process_helpers import ProcessGroup, wait_until

PEER = os.path.join(os.path.dirname(__file__), "peers", "echo_peer.py")


def _sample_messages(weights_bytes: bytes) -> dict[str, object]:
    rng = np.random.default_rng(3)
    obs = msg.Observation(bridge_id=2, episode=5, step=17, required_policy_version=9, phase="presample")
    obs.header.frame_id = "world"
    obs.state = to_float32_field(rng.standard_normal(39))
    act = msg.Action(bridge_id=2, episode=5, step=17, exploratory=True, policy_version=4)
    act.action = to_float32_field(rng.uniform(-1, 1, 4))
    tr = msg.Transition(bridge_id=1, seq=123456789012, episode=7, step=499, reward=-0.25,
                        terminated=False, truncated=True, success=True, exploratory=True, policy_version=3)
    tr.state = to_float32_field(rng.standard_normal(39))
    tr.action = to_float32_field(rng.uniform(-1, 1, 4))
    tr.next_state = to_float32_field(rng.standard_normal(39))
    ack = msg.TransitionAck(bridge_id=1, seq=41, policy_version=12, phase="finetune")
    status = msg.TrainingStatus(phase="finetune", env_steps=1000, gradient_updates=16000, policy_version=12,
                                episodes=4, success_rate=0.5, last_episode_return=12.5, critic_loss=0.125,
                                actor_loss=-3.5, alpha=0.0625, q_mean=40.0, replay_size=1000,
                                updates_per_second=70.0, effective_utd=16.0, epsilon=0.1,
                                q_calibration_gap=-1.5, seq_gaps=2, rejected_transitions=3)
    weights = msg.PolicyWeights(version=12, format="safetensors")
    weights.data = to_uint8_field(weights_bytes)
    return {"Observation": obs, "Action": act, "Transition": tr, "TransitionAck": ack,
            "TrainingStatus": status, "PolicyWeights": weights}


def _same(a, b) -> bool:
    """Field-by-field equality of two generated messages (arrays compared by value)."""
    for field in a.get_fields_and_field_types():
        va, vb = getattr(a, field), getattr(b, field)
        if hasattr(va, "get_fields_and_field_types"):
            if not _same(va, vb):
                return False
        elif hasattr(va, "tobytes") or isinstance(va, (list, np.ndarray)):
            if not np.array_equal(np.asarray(va), np.asarray(vb)):
                return False
        elif isinstance(va, float):
            if np.float32(va) != np.float32(vb):  # float32 fields come back as float32
                return False
        elif va != vb:
            return False
    return True


@pytest.fixture
def echo_peer(tmp_path):
    group = ProcessGroup()
    proc = group.start_python(PEER, log_path=tmp_path / "echo_peer.log")
    yield proc
    group.close()
    assert proc.poll() is not None, "echo peer still running after cleanup"


@pytest.fixture
def ros_node():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("porl_test_client", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.mark.parametrize("weights_mb", [2.5, 8.0])
def test_every_message_round_trips_between_processes(echo_peer, ros_node, weights_mb):
    node, executor = ros_node
    weights_bytes = np.random.default_rng(0).integers(0, 256, int(weights_mb * 1024 * 1024), dtype=np.uint8).tobytes()
    sent = _sample_messages(weights_bytes)
    received: dict[str, object] = {}
    pubs, subs = {}, {}
    for name, message in sent.items():
        qos = LATCHED_QOS if name == "PolicyWeights" else STREAM_QOS
        pubs[name] = node.create_publisher(type(message), f"/porl_test/in/{name}", qos)
        subs[name] = node.create_subscription(type(message), f"/porl_test/out/{name}",
                                              lambda m, name=name: received.__setitem__(name, m), qos)

    def spin(dt):
        executor.spin_once(timeout_sec=dt)

    # Discovery: both directions matched for every type. A volatile topic's message sent
    # before the peer's echo publisher is matched with our subscription is lost for good.
    assert wait_until(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 30, spin=spin), \
        "echo peer never subscribed (is DDS discovery working on localhost?)"
    assert wait_until(lambda: all(s.get_publisher_count() > 0 for s in subs.values()), 30, spin=spin), \
        "echo peer's publishers never matched our subscriptions"

    # Matching is per endpoint pair and may still be settling on the peer's side, so a
    # message that has not come back within 5 s is sent again (each echo is compared whole).
    deadline = time.monotonic() + 60
    while len(received) < len(sent) and time.monotonic() < deadline:
        for name, message in sent.items():
            if name not in received:
                pubs[name].publish(message)
        wait_until(lambda: len(received) == len(sent), 5, spin=spin)
    assert len(received) == len(sent), f"only {sorted(received)} came back of {sorted(sent)}"
    for name, message in sent.items():
        assert _same(message, received[name]), f"{name} changed on the way"
    back = from_uint8_field(received["PolicyWeights"].data)
    assert len(back) == len(weights_bytes) and back == weights_bytes
    state = from_float32_field(received["Transition"].next_state, expected_size=39)
    assert np.array_equal(state, np.asarray(sent["Transition"].next_state, dtype=np.float32))


def test_get_action_service_across_processes(echo_peer, ros_node):
    node, executor = ros_node
    client = node.create_client(GetAction, "/porl_test/get_action")
    deadline = time.monotonic() + 30
    while not client.wait_for_service(timeout_sec=0.5):
        assert time.monotonic() < deadline, "GetAction service never appeared"
    request = GetAction.Request(deterministic=True, min_policy_version=0)
    request.state = to_float32_field(np.arange(5, dtype=np.float32))
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=30)
    assert future.done(), "no GetAction response within 30 s"
    response = future.result()
    assert response.ok and response.policy_version == 7
    assert np.allclose(np.asarray(response.action), 2.0 * np.arange(5))
