"""The arm bridge in Cartesian (MoveIt Servo style TwistStamped) mode against sim_hardware,
and its refusal of bad parameters."""

from __future__ import annotations

import sys
import time

import numpy as np

from arm_harness import N_JOINTS, RATE_HZ, Harness, logs, ros_args, start_arm
from process_helpers import ProcessGroup, wait_until


def test_cartesian_mode_keeps_the_end_effector_in_the_box(tmp_path):
    group = ProcessGroup()
    harness = Harness(cartesian=True)
    box_min, box_max, margin = [0.3, -0.3, 0.3], [0.7, 0.3, 0.9], 0.01
    params = {"command_mode": "cartesian_velocity", "ee_pose_topic": "/ee_pose", "control_rate_hz": RATE_HZ,
              "workspace_min": box_min, "workspace_max": box_max, "workspace_margin": margin,
              "linear_action_scale": 0.2, "max_linear_speed": 0.1, "max_linear_change": 0.05,
              "home_ee_position": [0.55, 0.0, 0.7], "reset_tolerance": 0.01,
              "reward_function": "porl_ros.rewards:ee_reach", "reward_kwargs": '{"goal": [0.6, 0.0, 0.6]}',
              "terminate_on_success": False, "max_episode_steps": 1000}
    try:
        start_arm(group, tmp_path, params, {})
        assert wait_until(lambda: harness.observations, 60), logs(tmp_path)
        state = np.asarray(harness.observations[0][1].state)
        assert state.shape == (2 * N_JOINTS + 3,)  # joints, velocities, end-effector position
        assert np.allclose(state[-3:], [0.55, 0.0, 0.7], atol=0.011)
        start = time.monotonic()
        harness.policy = lambda s: np.array([1.0, 0.0, 0.0])  # push +x, out of the box
        harness.answer(harness.observations[-1][1])
        assert wait_until(lambda: any(p[0] >= box_max[0] - margin - 0.01 for t, p in harness.poses if t > start),
                          20), logs(tmp_path)
        time.sleep(1.0)
        harness.policy = None
        poses = np.array([p for t, p in harness.poses if t > start])
        assert poses[:, 0].max() <= box_max[0] + 1e-3, poses[:, 0].max()
        commands = np.array([c for t, c in harness.commands if t > start])
        assert np.all(np.abs(commands[:, :3]) <= 0.1 + 1e-9)
        # Pressed against the +x face: the outward component is zeroed (what remains is the
        # drift pull holding it at the face: nanometres per second either way).
        assert np.all(commands[-5:, 0] <= 1e-6), commands[-5:]
    finally:
        harness.close()
        group.close()


def test_bad_parameters_are_refused_by_name(tmp_path):
    group = ProcessGroup()
    try:
        for params, expected in (({"command_mode": "cartesian_velocity", "reward_function": "porl_ros.rewards:ee_reach",
                                   "reward_kwargs": '{"goal": [0.5, 0, 0.4]}'}, "ee_pose_topic"),
                                 ({"joint_position_lower": [-1.0, 0.0]}, "joint_position_lower"),
                                 ({"reward_function": "porl_ros.rewards:missing"}, "reward_function"),
                                 ({"home_joint_positions": [2.0], "success_topic": "/s"}, "home_joint_positions")):
            log = tmp_path / f"bad_{expected}.log"
            proc = group.start([sys.executable, "-m", "porl_ros.nodes.arm_bridge", *ros_args(params)], log_path=log)
            assert proc.wait(60) == 2
            assert expected in log.read_text(), log.read_text()
    finally:
        group.close()


def test_lockstep_holds_the_arm_until_each_transition_is_acknowledged(tmp_path):
    from porl_ros.nodes.qos import STREAM_QOS
    from porl_ros_interfaces.msg import TransitionAck

    group = ProcessGroup()
    harness = Harness()
    ack_pub = harness.node.create_publisher(TransitionAck, "/porl/transition_ack", STREAM_QOS)
    params = {"timing_mode": "lockstep", "control_rate_hz": RATE_HZ, "max_joint_velocity_change": [0.5],
              "success_topic": "/task_success", "home_joint_positions": [0.0]}
    try:
        start_arm(group, tmp_path, params, {"initial_positions": [0.0], "goal_joint_positions": [0.5]})
        assert wait_until(lambda: harness.observations, 60), logs(tmp_path)
        harness.policy = lambda s: np.full(N_JOINTS, 0.5)
        harness.answer(harness.observations[-1][1])
        for seq in range(3):
            assert wait_until(lambda: len(harness.transitions) > seq, 10), logs(tmp_path)
            published = time.monotonic()
            observations = len(harness.observations)
            time.sleep(0.4)  # a slow learner
            # Held still and silent until the ack: zero commands only, no new observation.
            assert len(harness.observations) == observations
            assert all(not np.any(c) for _, c in harness.commands_after(published + 0.05))
            ack = TransitionAck(bridge_id=0, seq=harness.transitions[-1].seq, policy_version=0, phase="presample")
            ack_pub.publish(ack)
            assert wait_until(lambda: len(harness.observations) > observations, 5), logs(tmp_path)
        seqs = [t.seq for t in harness.transitions]  # (a 4th may follow the last ack)
        assert seqs[:3] == [0, 1, 2] and seqs == list(range(len(seqs)))
        assert all(t.reward == 0.0 and not t.success for t in harness.transitions)  # success topic: not at goal
    finally:
        harness.close()
        group.close()
