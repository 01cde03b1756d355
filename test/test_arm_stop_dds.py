"""The arm must stop whatever happens to the arm bridge, over DDS against sim_hardware:
SIGTERM / SIGINT / SIGHUP of the bridge send a last zero command; after a SIGKILL (no
bridge can stop anything) sim_hardware's own command timeout stops the arm, as a real
driver's does; an emergency stop survives a restart of the bridge; a slow reward
function does not delay the watchdog's stop; an end effector that drifts out of the
workspace box is pulled back in."""

from __future__ import annotations

import signal
import sys
import time

import numpy as np
import pytest

from arm_harness import GOAL, JOINT_BRIDGE_PARAMS, N_JOINTS, PERIOD, RATE_HZ, Harness, logs, ros_args, start_arm
from process_helpers import ProcessGroup, wait_until

from conftest import TEST_DIR

MOVE = np.r_[np.full(N_JOINTS, 0.1), 1.0]  # 0.2 rad/s per joint
SLOW_ENV = {"PYTHONPATH": str(TEST_DIR / "peers")}


def _moving(harness: Harness, tmp_path, steps: int = 5) -> None:
    harness.policy = lambda state: MOVE
    assert wait_until(lambda: harness.observations, 60), logs(tmp_path)
    harness.answer(harness.observations[-1][1])
    count = len(harness.transitions)
    assert wait_until(lambda: len(harness.transitions) >= count + steps, 30), logs(tmp_path)
    assert any(np.any(c) for _, c in harness.commands[-20:]), "the arm should be moving"


def _joint_speed(harness: Harness, since: float) -> float:
    states = [(t, q) for t, q in harness.joint_states if t > since]
    (t0, q0), (t1, q1) = states[0], states[-1]
    return float(np.max(np.abs(q1 - q0)) / (t1 - t0))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_to_the_bridge_sends_zero_before_it_exits(tmp_path, sig):
    group = ProcessGroup()
    harness = Harness()
    try:
        # No command timeout on the "driver": only the bridge's own last command can stop it.
        _, bridge = start_arm(group, tmp_path, JOINT_BRIDGE_PARAMS, {"goal_joint_positions": GOAL,
                                                                      "command_timeout_s": 0.0})
        _moving(harness, tmp_path)
        harness.policy = None
        sent = time.monotonic()
        assert group.stop(bridge, sig) == 0, logs(tmp_path)
        assert wait_until(lambda: any(not np.any(c) for _, c in harness.commands_after(sent)), 2), \
            f"no zero command after {signal.Signals(sig).name}\n" + logs(tmp_path)
        assert not np.any(harness.commands[-1][1])
        time.sleep(0.5)
        # sim_hardware holds a command forever here: only the bridge's last zero can have stopped it.
        assert _joint_speed(harness, time.monotonic() - 0.3) < 1e-6
    finally:
        harness.close()
        group.close()


def test_sim_hardware_times_out_after_sigkill_of_the_bridge(tmp_path):
    group = ProcessGroup()
    harness = Harness()
    try:
        _, bridge = start_arm(group, tmp_path, JOINT_BRIDGE_PARAMS, {"goal_joint_positions": GOAL,
                                                                      "command_timeout_s": 0.3})
        _moving(harness, tmp_path)
        killed = time.monotonic()
        group.stop(bridge, signal.SIGKILL)
        time.sleep(1.0)
        assert _joint_speed(harness, killed + 0.5) < 1e-6, "sim_hardware kept the last command"
        assert not any(not np.any(c) for _, c in harness.commands_after(killed + 0.1))  # nobody commanded zero
    finally:
        harness.close()
        group.close()
    assert "command timeout" in (tmp_path / "sim_hardware.log").read_text()


def test_emergency_stop_is_latched_across_a_bridge_restart(tmp_path):
    group = ProcessGroup()
    harness = Harness()
    latch = tmp_path / "state" / "arm_bridge.emergency_stop"
    params = {**JOINT_BRIDGE_PARAMS, "emergency_stop_file": str(latch)}
    try:
        hardware, bridge = start_arm(group, tmp_path, params, {"goal_joint_positions": GOAL})
        _moving(harness, tmp_path)
        assert harness.call_estop(True).success
        assert latch.is_file()
        group.stop(bridge, signal.SIGTERM)
        harness.policy = lambda state: MOVE
        observations = len(harness.observations)
        restarted = time.monotonic()
        bridge = group.start([*bridge.args], log_path=tmp_path / "arm_bridge_2.log", env={"OMP_NUM_THREADS": "1"})
        assert wait_until(lambda: "EMERGENCY STOP latched" in (tmp_path / "arm_bridge_2.log").read_text(), 30)
        time.sleep(2.0)
        # Held: no episode starts, nothing but zero is commanded.
        assert len(harness.observations) == observations
        assert all(not np.any(c) for _, c in harness.commands_after(restarted))
        assert _joint_speed(harness, restarted + 1.0) < 1e-6
        assert harness.call_estop(False).success  # only an explicit release frees it
        assert not latch.exists()
        assert wait_until(lambda: len(harness.observations) > observations, 30), logs(tmp_path)
    finally:
        harness.close()
        group.close()


def test_slow_reward_does_not_delay_the_watchdog_stop(tmp_path):
    group = ProcessGroup()
    harness = Harness()
    params = {**JOINT_BRIDGE_PARAMS, "reward_function": "slow_reward:slow_joint_reach",
              "reward_kwargs": '{"goal": %s, "seconds": 0.4}' % GOAL}
    try:
        group.start([sys.executable, "-m", "porl_ros.nodes.sim_hardware", *ros_args({"goal_joint_positions": GOAL})],
                    log_path=tmp_path / "sim_hardware.log", env={"OMP_NUM_THREADS": "1"})
        group.start([sys.executable, "-m", "porl_ros.nodes.arm_bridge", *ros_args(params)],
                    log_path=tmp_path / "arm_bridge.log", env={"OMP_NUM_THREADS": "1", **SLOW_ENV})
        _moving(harness, tmp_path, steps=3)
        # Each step ends in a 0.4 s reward call, with the last action still commanded. The
        # watchdog (its own thread) must zero it within 2 periods of that action, not let the
        # arm run on it until the reward returns: after every moving command, the next
        # command (a new action, the stream, or the stop) comes within 2 periods.
        time.sleep(3.0)
        harness.policy = None
        time.sleep(0.5)
        commands = list(harness.commands)
        gaps = [t1 - t0 for (t0, c0), (t1, _) in zip(commands, commands[1:]) if np.any(c0)]
        assert len(gaps) > 10 and any(not np.any(c) for _, c in commands), logs(tmp_path)
        assert max(gaps) < 2 * PERIOD, (sorted(gaps)[-5:], logs(tmp_path))
    finally:
        harness.close()
        group.close()


def test_drift_out_of_the_workspace_box_is_pulled_back(tmp_path):
    group = ProcessGroup()
    harness = Harness(cartesian=True)
    box_min, box_max, margin = [0.3, -0.06, 0.3], [0.8, 0.06, 0.9], 0.01
    params = {"command_mode": "cartesian_velocity", "ee_pose_topic": "/ee_pose", "control_rate_hz": RATE_HZ,
              "workspace_min": box_min, "workspace_max": box_max, "workspace_margin": margin,
              "linear_action_scale": 0.2, "max_linear_speed": 0.1, "max_linear_change": 0.05,
              "home_ee_position": [0.55, 0.0, 0.7], "reset_tolerance": 0.01,
              "reward_function": "porl_ros.rewards:ee_reach", "reward_kwargs": '{"goal": [0.6, 0.0, 0.6]}',
              "terminate_on_success": False, "max_episode_steps": 1000}
    try:
        # The base yaw drifts at 0.1 rad/s (~0.05 m/s sideways) whatever is commanded.
        start_arm(group, tmp_path, params, {"drift_velocity": [0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]})
        assert wait_until(lambda: harness.observations, 60), logs(tmp_path)
        start = time.monotonic()
        harness.policy = lambda s: np.zeros(3)  # the policy asks the arm to hold still
        harness.answer(harness.observations[-1][1])
        time.sleep(4.0)
        harness.policy = None
        poses = np.array([p for t, p in harness.poses if t > start + 0.5])
        assert len(poses) > 50, logs(tmp_path)
        # Without the pull it would be ~0.2 m out by now; with it it settles at the inner face.
        assert poses[:, 1].max() <= box_max[1] + 0.005, poses[:, 1].max()
        commands = np.array([c for t, c in harness.commands if t > start])
        assert commands[:, 1].min() < 0, "no inward (-y) pull was commanded"
        assert np.all(np.abs(commands[:, :3]) <= 0.1 + 1e-9)
    finally:
        harness.close()
        group.close()
