"""Hostile input at every node boundary, over real DDS: malformed sizes, NaN/inf, huge
arrays, random bytes as weights, out-of-range ids and sequence numbers. The nodes stay
up, count each rejection by field, and only valid transitions reach the replay buffer."""

from __future__ import annotations

import collections
import signal
import threading

import numpy as np
import pytest
import rclpy
import torch
from rclpy.parameter import Parameter

from porl_ros.core.checkpoint import PolicyMeta, actor_to_bytes, save_actor
from porl_ros.core.learner_state import LearnerStateStore
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.nodes.conversions import to_float32_field, to_uint8_field
from porl_ros.nodes.exploration_controller import ExplorationController
from porl_ros.nodes.learner import LearnerNode
from porl_ros.nodes.policy_server import PolicyServer
from porl_ros.nodes.qos import LATCHED_QOS, STREAM_QOS
from porl_ros_interfaces.msg import Action, Observation, PolicyWeights, Transition, TransitionAck
from porl_ros_interfaces.srv import GetAction
from process_helpers import wait_until

OBS, ACT = 39, 4


def small_actor(obs_dim=OBS, bound=1.0, seed=0):
    torch.manual_seed(seed)
    return SquashedGaussianActor(obs_dim, ACT, (64, 64), -bound * np.ones(ACT), bound * np.ones(ACT))


class Graph:
    """Learner, policy server and controller in one executor; a separate 'attacker' context."""

    def __init__(self, tmp_path, checkpoint: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        o = lambda **kw: [Parameter(k, value=v) for k, v in kw.items()]  # noqa: E731
        self.learner = LearnerNode(context=self.context, parameter_overrides=o(
            checkpoint=checkpoint, run_dir=str(tmp_path / "learner"), total_env_steps=0, presample_steps=1000,
            n_critics=2, critic_hidden=[64, 64], batch_size=32, learning_starts=32, utd_ratio=1,
            checkpoint_every_env_steps=0, torch_threads=1, transition_topic="/fuzz/transition",
            ack_topic="/fuzz/ack", weights_topic="/fuzz/learner_weights", status_topic="/fuzz/status"))
        self.server = PolicyServer(context=self.context, parameter_overrides=o(
            checkpoint=checkpoint, weights_topic="/fuzz/policy_weights", get_action_service="/fuzz/get_action"))
        self.controller = ExplorationController(context=self.context, parameter_overrides=o(
            checkpoint=checkpoint, get_action_service="/fuzz/get_action", observation_topic="/fuzz/observation",
            action_topic="/fuzz/action", request_timeout_s=2.0))
        self.executor = rclpy.executors.MultiThreadedExecutor(num_threads=4, context=self.context)
        for node in (self.learner, self.server, self.controller):
            self.executor.add_node(node)
        self.errors: list[BaseException] = []

        self.attacker_context = rclpy.Context()
        rclpy.init(context=self.attacker_context)
        self.attacker = rclpy.create_node("porl_fuzzer", context=self.attacker_context)
        a = self.attacker
        self.transition_pub = a.create_publisher(Transition, "/fuzz/transition", STREAM_QOS)
        self.weights_pub = a.create_publisher(PolicyWeights, "/fuzz/policy_weights", LATCHED_QOS)
        self.observation_pub = a.create_publisher(Observation, "/fuzz/observation", STREAM_QOS)
        self.client = a.create_client(GetAction, "/fuzz/get_action")
        self.acks: list[TransitionAck] = []
        self.actions: list[Action] = []
        a.create_subscription(TransitionAck, "/fuzz/ack", self.acks.append, STREAM_QOS)
        a.create_subscription(Action, "/fuzz/action", self.actions.append, STREAM_QOS)
        self.attacker_executor = rclpy.executors.SingleThreadedExecutor(context=self.attacker_context)
        self.attacker_executor.add_node(a)
        self.running = True
        self.threads = [threading.Thread(target=self._spin, args=(ex,), daemon=True)
                        for ex in (self.executor, self.attacker_executor)]
        for t in self.threads:
            t.start()

    def _spin(self, executor) -> None:
        while self.running:
            try:
                executor.spin_once(timeout_sec=0.05)
            except BaseException as e:  # a callback raised: the node would have died
                self.errors.append(e)

    def call(self, state) -> GetAction.Response:
        request = GetAction.Request(deterministic=True)
        request.state = to_float32_field(np.asarray(state, dtype=np.float32))
        future = self.client.call_async(request)
        assert wait_until(future.done, 20), "GetAction unanswered"
        return future.result()

    def close(self) -> None:
        self.learner.close()
        self.running = False
        for t in self.threads:
            t.join(timeout=5)
        self.executor.shutdown()
        self.attacker_executor.shutdown()
        for node in (self.learner, self.server, self.controller, self.attacker):
            node.destroy_node()
        self.context.try_shutdown()
        self.attacker_context.try_shutdown()


@pytest.fixture
def graph(tmp_path):
    actor = small_actor()
    save_actor(tmp_path / "actor", actor, PolicyMeta.for_actor(actor))
    g = Graph(tmp_path, str(tmp_path / "actor"))
    yield g
    if g.running:
        g.close()


def transition(seq, step=None, bridge_id=0, state=None, action=None, reward=0.5, next_state=None, episode=0):
    rng = np.random.default_rng(seq % 2**32)
    msg = Transition(bridge_id=bridge_id, seq=seq, episode=episode, step=seq if step is None else step,
                     reward=float(reward))
    msg.state = to_float32_field(rng.uniform(-1, 1, OBS) if state is None else state)
    msg.action = to_float32_field(rng.uniform(-1, 1, ACT) if action is None else action)
    msg.next_state = to_float32_field(rng.uniform(-1, 1, OBS) if next_state is None else next_state)
    return msg


def test_hostile_transitions_never_reach_replay(graph, tmp_path):
    assert wait_until(lambda: graph.transition_pub.get_subscription_count() > 0, 20)
    # Acks are volatile: an ack sent before discovery matched our subscription would be lost.
    assert wait_until(lambda: graph.learner.ack_pub.get_subscription_count() > 0, 20)
    nan_state = np.full(OBS, np.nan)
    inf_state = np.full(OBS, np.inf)
    hostile = [  # (message, field it must be rejected for)
        (transition(2, state=np.zeros(5)), "state"),
        (transition(2, state=nan_state), "state"),
        (transition(2, state=np.zeros(1_000_000)), "state"),
        (transition(2, next_state=inf_state), "next_state"),
        (transition(2, action=np.zeros(7)), "action"),
        (transition(2, action=[5.0, 0.0, 0.0, 0.0]), "action"),
        (transition(2, action=[np.nan] * 4), "action"),
        (transition(2, reward=float("nan")), "reward"),
        (transition(2, reward=float("-inf")), "reward"),
        (transition(2, reward=1e12), "reward"),
        (transition(2, bridge_id=7), "bridge_id"),
        (transition(2, bridge_id=2**32 - 1), "bridge_id"),
        (transition(2**64 - 1), "seq"),
        (transition(3, step=1), "step"),  # a step that does not advance within the episode
        (transition(3, step=5, state=np.zeros(OBS), reward=float("nan")), "reward"),
    ]
    valid = [transition(k) for k in range(2)]
    for msg in valid:
        graph.transition_pub.publish(msg)
    for msg, _ in hostile:
        graph.transition_pub.publish(msg)
    valid += [transition(k) for k in range(2, 6)]
    for msg in valid[2:]:
        graph.transition_pub.publish(msg)
    stale = transition(3)  # seq 3 again after 5 was stored: out of order
    graph.transition_pub.publish(stale)
    later = transition(7)  # one lost (seq 6): a gap, counted, and accepted
    graph.transition_pub.publish(later)
    valid.append(later)
    expected = collections.Counter(field for _, field in hostile)
    expected["seq"] += 1
    learner = graph.learner
    assert wait_until(lambda: learner.learner.env_steps == len(valid)
                      and sum(learner.rejections.values()) == sum(expected.values()), 60), \
        (learner.learner.env_steps, learner.rejections)
    assert learner.rejections == expected
    assert learner.learner.seq_gaps == 1
    # Every transition got an ack (rejected ones too), so a bridge with bad data goes on.
    assert wait_until(lambda: len(graph.acks) == len(valid) + len(hostile) + 1, 20), len(graph.acks)
    assert not graph.errors, graph.errors
    graph.close()
    store = LearnerStateStore(tmp_path / "learner" / "state", OBS, ACT)
    final = store.load_checkpoint(store.checkpoints()[0])
    stored = final.replay.column("obs")
    assert np.array_equal(stored, np.stack([np.asarray(m.state, dtype=np.float32) for m in valid]))
    assert np.all(np.isfinite(final.replay.column("reward")))
    assert final.bookkeeping["rejected"] == dict(expected)


def test_hostile_weights_requests_and_observations(graph):
    server, controller = graph.server, graph.controller
    assert wait_until(lambda: graph.weights_pub.get_subscription_count() > 0 and graph.client.service_is_ready(), 20)

    def weights(data: bytes, version: int, fmt: str = "safetensors") -> PolicyWeights:
        msg = PolicyWeights(version=version, format=fmt)
        msg.data = to_uint8_field(data)
        return msg

    nan_actor = small_actor()
    with torch.no_grad():
        next(nan_actor.parameters()).fill_(float("nan"))
    rng = np.random.default_rng(0)
    header_lies = (2**62).to_bytes(8, "little") + b"{}"
    hostile = [
        (weights(actor_to_bytes(small_actor()), 101, fmt="pickle"), "weights.format"),
        (weights(b"", 102), "weights.data"),
        (weights(rng.bytes(1000), 103), "weights.data"),
        (weights(rng.bytes(5_000_000), 104), "weights.data"),
        (weights(header_lies, 105), "weights.data"),
        (weights(actor_to_bytes(small_actor(obs_dim=10)), 106), "weights.data"),  # wrong shapes
        (weights(actor_to_bytes(small_actor(bound=2.0)), 107), "weights.data"),  # another robot's bounds
        (weights(actor_to_bytes(nan_actor), 108), "weights.data"),
    ]
    for i, (msg, _) in enumerate(hostile, 1):
        graph.weights_pub.publish(msg)  # one at a time: the latched topic keeps only the newest
        assert wait_until(lambda: server.rejected_weights == i, 20), (i, server.rejections)
    assert server.rejections == collections.Counter(field for _, field in hostile)
    assert server.version == 0
    good = small_actor(seed=5)
    graph.weights_pub.publish(weights(actor_to_bytes(good), 200))
    assert wait_until(lambda: server.version == 200, 20)

    for bad_state in (np.zeros(3), np.full(OBS, np.nan), np.zeros(1_000_000)):
        response = graph.call(bad_state)
        assert not response.ok and "state" in response.error
    assert server.rejections["request.state"] == 3
    state = np.linspace(-1, 1, OBS)
    response = graph.call(state)
    assert response.ok and response.policy_version == 200
    assert np.allclose(np.asarray(response.action), good.act(state.astype(np.float32), deterministic=True),
                       atol=1e-6)

    # The controller: bad observations refused and counted; good ones still answered.
    assert wait_until(lambda: graph.observation_pub.get_subscription_count() > 0, 20)

    def observation(state, bridge_id=0, step=0, phase="presample"):
        msg = Observation(bridge_id=bridge_id, episode=0, step=step, phase=phase)
        msg.state = to_float32_field(np.asarray(state, dtype=np.float32))
        return msg

    for msg in (observation(np.zeros(3)), observation(np.full(OBS, np.inf)), observation(np.zeros(OBS), bridge_id=9),
                observation(np.zeros(2_000_000))):
        graph.observation_pub.publish(msg)
    graph.observation_pub.publish(observation(state, step=1, phase="evil"))  # counted, answered as current phase
    assert wait_until(lambda: len(graph.actions) >= 1, 30), controller.rejections
    graph.observation_pub.publish(observation(state, step=2))
    assert wait_until(lambda: len(graph.actions) >= 2, 30), controller.rejections
    assert controller.rejections == {"observation.state": 3, "observation.bridge_id": 1, "observation.phase": 1}
    for action in graph.actions:
        values = np.asarray(action.action)
        assert values.shape == (ACT,) and np.all(np.abs(values) <= 1.0) and action.step in (1, 2)
    assert not graph.errors, graph.errors


def test_state_out_of_training_range_or_nan_action_never_reaches_a_robot(graph):
    """A finite but huge state ([1e38] * 39) made the actor answer NaN with ok=true. The policy
    server refuses such a state, and any non-finite action, with a reason; the controller then
    sends no action for that observation (the bridge sees a missing action) and counts it."""
    server, controller = graph.server, graph.controller
    assert wait_until(lambda: graph.client.service_is_ready(), 20)
    for huge in ([1e38] * OBS, [0.0] * (OBS - 1) + [-3e6]):
        response = graph.call(huge)
        assert not response.ok and not response.not_loaded_yet
        assert "trained on" in response.error and "max_normalised_state" in response.error, response.error
        assert not np.any(np.isnan(np.asarray(response.action)))
    assert server.out_of_range_states == 2
    assert graph.call(np.full(OBS, 50.0)).ok  # within the default bound (100 standard deviations)

    real_actor = server.actor

    class NanActor:  # a diverged actor: finite input, NaN out
        obs_dim, obs_mean, obs_std = real_actor.obs_dim, real_actor.obs_mean, real_actor.obs_std

        def act(self, state, deterministic=True, generator=None):
            return np.full(ACT, np.nan, dtype=np.float32)

    server.actor = NanActor()
    response = graph.call(np.zeros(OBS))
    assert not response.ok and "non-finite" in response.error
    assert server.non_finite_actions == 1
    values = server._health().values  # counted in diagnostics
    assert values["non_finite_actions"] == 1 and values["out_of_range_states"] == 2

    # Through the controller: no Action at all for these observations, counted.
    assert wait_until(lambda: graph.observation_pub.get_subscription_count() > 0, 20)

    def observation(state, step):
        msg = Observation(bridge_id=0, episode=0, step=step, phase="presample")
        msg.state = to_float32_field(np.asarray(state, dtype=np.float32))
        return msg

    graph.observation_pub.publish(observation(np.zeros(OBS), step=1))  # NaN actor
    assert wait_until(lambda: controller.refused_actions == 1, 20), controller.refused_actions
    server.actor = real_actor
    graph.observation_pub.publish(observation(np.full(OBS, 1e38), step=2))  # out of range
    assert wait_until(lambda: controller.refused_actions == 2, 20), controller.refused_actions
    assert controller._health().values["refused_actions"] == 2
    graph.observation_pub.publish(observation(np.zeros(OBS), step=3))
    assert wait_until(lambda: len(graph.actions) >= 1, 20)
    assert [a.step for a in graph.actions] == [3]
    assert all(np.all(np.isfinite(np.asarray(a.action))) for a in graph.actions)
    assert not graph.errors, graph.errors


def test_random_messages_of_every_type_into_a_running_graph(tmp_path):
    """A second process sends random well-formed messages of every type the graph uses
    (Observation, Action, Transition, TransitionAck, TrainingStatus, PolicyWeights and
    GetAction requests) into a running `porl-ros run` for up to 20 s: the run still
    finishes, and only the real bridge's transitions are stored, gap-free and finite."""
    import json
    import os
    import subprocess
    import sys
    import time

    from graph_helpers import SMALL_LEARNER, random_actor_checkpoint, run_command

    class _Factory:  # random_actor_checkpoint wants a tmp_path_factory
        @staticmethod
        def mktemp(name):
            path = tmp_path / name
            path.mkdir()
            return path

    checkpoint = random_actor_checkpoint(_Factory)
    steps = 1500
    run_dir = tmp_path / "run"
    cmd = run_command(checkpoint, run_dir, "--steps", str(steps), "--presample-steps", "500",
                      "--episode-steps", "100", params=SMALL_LEARNER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runner = subprocess.Popen(cmd, stdout=open(tmp_path / "runner.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True, env=env)
    fuzzer = None
    try:
        bridge_log = run_dir / "logs" / "sim_bridge.log"
        assert wait_until(lambda: bridge_log.is_file() and "episode 0:" in bridge_log.read_text(), 120), \
            (tmp_path / "runner.log").read_text()
        from conftest import TEST_DIR
        fuzzer = subprocess.Popen([sys.executable, str(TEST_DIR / "peers" / "fuzz_peer.py"), "20", "7"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True, env=env)
        fuzz_out, _ = fuzzer.communicate(timeout=90)
        code = runner.wait(400)
    finally:
        for proc in (fuzzer, runner):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    logs = "".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((run_dir / "logs").glob("*.log")))
    assert code == 0, (tmp_path / "runner.log").read_text() + logs
    sent = json.loads(fuzz_out.strip().splitlines()[-1])
    assert all(sent[k] > 0 for k in ("observation", "action", "transition", "ack", "status", "weights",
                                     "get_action")), sent
    summary = json.loads((run_dir / "learner" / "learner_summary.json").read_text())
    assert summary["env_steps"] == steps and summary["seq_gaps"] == 0, summary
    assert summary["rejected_transitions"] > 0, "the fuzzed transitions never reached the learner"
    store = LearnerStateStore(run_dir / "learner" / "state", OBS, ACT)
    final = store.load_checkpoint(store.checkpoints()[0])
    assert len(final.replay) == steps
    for column in ("obs", "action", "reward", "next_obs"):
        assert np.all(np.isfinite(final.replay.column(column))), column
    assert np.all(np.abs(final.replay.column("action")) <= 1.0)
