"""Run identity (issue 17): a bridge obeys only its own run's learner, and the learner stores
only its own run's transitions. Before, a forged TrainingStatus with phase=done from anyone on
the ROS domain stopped every bridge."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

from graph_helpers import ACT_DIM, ENV_ID, OBS_DIM, random_actor_checkpoint
from porl_ros.core.phases import DONE
from porl_ros_interfaces.msg import TrainingStatus, Transition, TransitionAck


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def test_bridge_ignores_status_and_acks_of_another_run(context):
    from porl_ros.nodes.sim_bridge import SimBridge

    bridge = SimBridge(context=context, parameter_overrides=[
        Parameter("env_id", value=ENV_ID), Parameter("run_id", value="run-a"), Parameter("viz_rate_hz", value=0.0)])
    try:
        bridge._on_status(TrainingStatus(phase=DONE, run_id="forged"))
        bridge._on_status(TrainingStatus(phase=DONE))  # no run id at all
        assert not bridge.finished and bridge.foreign_messages == 2
        bridge.awaiting_ack = True
        bridge.last_transition = Transition(seq=0)
        bridge._on_ack(TransitionAck(seq=0, phase=DONE, run_id="forged"))
        assert bridge.awaiting_ack and not bridge.finished
        bridge._on_status(TrainingStatus(phase=DONE, run_id="run-a"))  # its own learner
        assert bridge.finished
    finally:
        bridge.close()
        bridge.destroy_node()


def test_learner_rejects_transitions_of_another_run(context, checkpoint, tmp_path):
    from porl_ros.nodes.learner import LearnerNode

    learner = LearnerNode(context=context, parameter_overrides=[
        Parameter("checkpoint", value=checkpoint), Parameter("run_dir", value=str(tmp_path / "learner")),
        Parameter("run_id", value="run-a"), Parameter("n_critics", value=2), Parameter("critic_hidden", value=[16]),
        Parameter("tensorboard", value=False)])
    try:
        def transition(run_id: str, seq: int) -> Transition:
            return Transition(seq=seq, step=seq, state=np.zeros(OBS_DIM, np.float32),
                              action=np.zeros(ACT_DIM, np.float32), next_state=np.zeros(OBS_DIM, np.float32),
                              run_id=run_id)

        learner._on_transition(transition("forged", 5000))
        assert learner.learner.env_steps == 0 and learner.learner.rejected["run_id"] == 1
        learner._on_transition(transition("run-a", 0))
        assert learner.learner.env_steps == 1
        assert learner._status_message().run_id == "run-a"
    finally:
        learner.close()
        learner.destroy_node()


def test_the_runner_gives_each_run_an_identity_and_keeps_it_on_resume(tmp_path):
    from porl_ros import runner

    args = runner.build_parser().parse_args([])
    assert args.run_id is None  # drawn by main() for --role all
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args.run_id = "abc123"
    runner.save_run_settings(run_dir, args)
    argv = ["--resume", "--run-dir", str(run_dir)]
    resumed = runner.build_parser().parse_args(argv)
    runner.apply_saved_settings(run_dir, resumed, runner.explicit_options(argv))
    assert resumed.run_id == "abc123"


def test_policy_server_ignores_weights_of_another_run(context, checkpoint):
    """A forged (or another run's) PolicyWeights would swap the policy that drives the robot: the
    policy server keeps serving its own run's actor, even when the forged version is higher."""
    from porl_ros.core.checkpoint import actor_to_bytes, load_actor
    from porl_ros.nodes.conversions import to_uint8_field
    from porl_ros.nodes.policy_server import PolicyServer
    from porl_ros_interfaces.msg import PolicyWeights

    server = PolicyServer(context=context, parameter_overrides=[
        Parameter("checkpoint", value=checkpoint), Parameter("run_id", value="run-a")])
    try:
        actor, meta = load_actor(checkpoint)
        data = to_uint8_field(actor_to_bytes(actor, meta))
        served = server.actor
        server._on_weights(PolicyWeights(version=1000, format="safetensors", data=data, run_id="forged"))
        server._on_weights(PolicyWeights(version=1001, format="safetensors", data=data))  # no run id at all
        assert server.actor is served and server.version == meta.policy_version
        assert server.rejections["weights.run_id"] == 2
        server._on_weights(PolicyWeights(version=meta.policy_version + 1, format="safetensors", data=data,
                                         run_id="run-a"))  # its own learner
        assert server.actor is not served and server.version == meta.policy_version + 1
    finally:
        server.destroy_node()
