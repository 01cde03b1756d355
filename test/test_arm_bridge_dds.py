"""The arm bridge over DDS against sim_hardware (a simulated velocity-controlled arm in its
own process): the test process plays the exploration controller and the learner's
transition subscriber, and records every command on the driver topics.

Starving (actions stop; joint states stop because the "driver" process is frozen with
SIGSTOP) must give a zero-velocity command within 2 control periods; flooding (NaN,
wrong-sized, huge and stale actions, and actions pushing joints into their limits) must
never put an out-of-limit or non-finite command on the driver topic.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from arm_harness import (GOAL, JOINT_BRIDGE_PARAMS, LOWER, MARGIN, MAX_CHANGE, MAX_VELOCITY, N_JOINTS, PERIOD,
                         UPPER, Harness, logs, start_arm)
from process_helpers import ProcessGroup, wait_until


@pytest.fixture(scope="module")
def joint_arm(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("arm")
    group = ProcessGroup()
    harness = Harness()
    hardware, bridge = start_arm(group, tmp_path, JOINT_BRIDGE_PARAMS, {"goal_joint_positions": GOAL})
    try:
        yield harness, hardware, bridge, tmp_path
    finally:
        harness.close()
        group.close()


def _first_zero_after(harness: Harness, t: float, timeout: float = 1.0) -> float:
    found = wait_until(lambda: any(not np.any(c) for _, c in harness.commands_after(t)), timeout)
    assert found, "no zero-velocity command followed"
    return next(s for s, c in harness.commands_after(t) if not np.any(c))


def test_reset_drives_home_then_steps_stream(joint_arm):
    harness, _, _, tmp_path = joint_arm
    # sim_hardware starts away from home ([0, .4, .8, .4, 0, 0, 0]); the first observation
    # comes only once the reset controller has driven every joint home (0) within tolerance.
    assert wait_until(lambda: harness.observations, 60), logs(tmp_path)
    first_state = np.asarray(harness.observations[0][1].state)
    assert np.all(np.abs(first_state[:N_JOINTS]) <= 0.02 + 1e-6), first_state
    assert harness.observations[0][1].episode == 0 and harness.observations[0][1].step == 0
    harness.policy = lambda state: np.r_[np.full(N_JOINTS, 0.1), 1.0]  # 0.2 rad/s per joint
    harness.answer(harness.observations[-1][1])
    assert wait_until(lambda: len(harness.transitions) >= 20, 30), logs(tmp_path)
    seqs = [t.seq for t in harness.transitions]
    assert seqs == list(range(len(seqs)))
    t = harness.transitions[5]
    # Reward from the named function on the recorded next state; executed action recorded.
    next_state = np.asarray(t.next_state)
    assert t.reward == pytest.approx(-np.linalg.norm(next_state[:N_JOINTS] - GOAL), abs=1e-4)
    assert np.asarray(t.action)[:N_JOINTS] == pytest.approx(np.full(N_JOINTS, 0.1), abs=1e-6)
    assert np.all(next_state[:N_JOINTS] > np.asarray(t.state)[:N_JOINTS])  # it moved as commanded


def test_watchdog_zero_velocity_within_two_periods_when_actions_stop(joint_arm, record_property):
    harness, _, _, tmp_path = joint_arm
    harness.policy = lambda state: np.r_[np.full(N_JOINTS, 0.1), 1.0]
    if harness.observations:
        harness.answer(harness.observations[-1][1])
    count = len(harness.transitions)
    assert wait_until(lambda: len(harness.transitions) >= count + 5, 20), logs(tmp_path)
    assert np.any(harness.commands[-1][1]), "arm should be moving before the starvation"
    harness.policy = None  # the controller goes silent
    time.sleep(2 * PERIOD)  # the answer to an observation in flight may still go out
    last_action = harness.last_action_time
    stop = _first_zero_after(harness, last_action)
    latency = stop - last_action
    record_property("watchdog_action_latency_ms", round(latency * 1e3, 1))
    print(f"watchdog latency (actions stopped): {latency * 1e3:.1f} ms")
    assert latency < 2 * PERIOD, f"zero velocity after {latency * 1e3:.1f} ms"
    time.sleep(0.5)
    assert all(not np.any(c) for _, c in harness.commands_after(stop)), "arm moved again without actions"
    # The controller returns: the bridge steps again.
    harness.policy = lambda state: np.r_[np.full(N_JOINTS, -0.1), 1.0]
    count = len(harness.transitions)
    harness.answer(harness.observations[-1][1])
    assert wait_until(lambda: len(harness.transitions) >= count + 3, 10), logs(tmp_path)


def test_watchdog_zero_velocity_within_two_periods_when_joint_states_stop(joint_arm, record_property):
    harness, hardware, _, tmp_path = joint_arm
    harness.policy = lambda state: np.r_[np.full(N_JOINTS, -0.1), 1.0]
    count = len(harness.transitions)
    assert wait_until(lambda: len(harness.transitions) >= count + 3, 10), logs(tmp_path)
    hardware.send_signal(signal.SIGSTOP)  # the driver hangs: no more joint states
    try:
        time.sleep(0.5)
        last_joint_state = harness.joint_states[-1][0]
        stop = _first_zero_after(harness, last_joint_state)
        latency = stop - last_joint_state
        record_property("watchdog_joint_state_latency_ms", round(latency * 1e3, 1))
        print(f"watchdog latency (joint states stopped): {latency * 1e3:.1f} ms")
        assert latency < 2 * PERIOD, f"zero velocity after {latency * 1e3:.1f} ms"
        stalled = len(harness.transitions)
        assert all(not np.any(c) for _, c in harness.commands_after(stop))
    finally:
        hardware.send_signal(signal.SIGCONT)
    assert wait_until(lambda: len(harness.transitions) >= stalled + 3, 10), "no steps after the driver came back"
    seqs = [t.seq for t in harness.transitions]
    assert seqs == list(range(len(seqs)))


def test_flooding_never_exceeds_limits(joint_arm):
    harness, _, _, tmp_path = joint_arm
    start = time.monotonic()
    harness.flood = True
    harness.policy = lambda state: np.r_[np.ones(N_JOINTS), 1.0]  # 2 rad/s asked, into the upper limits
    if harness.observations:
        harness.answer(harness.observations[-1][1])
    # Long enough to hit the upper limits (0.5 rad/s from wherever the joints are).
    assert wait_until(lambda: any(np.all(q >= UPPER - MARGIN - 0.05) for t, q in harness.joint_states if t > start),
                      20), logs(tmp_path)
    time.sleep(1.0)
    harness.flood = False
    harness.policy = None
    commands = [c for t, c in harness.commands if t > start]
    assert len(commands) > 20
    previous = None
    for command in commands:
        assert command.shape == (N_JOINTS,) and np.all(np.isfinite(command))
        assert np.all(np.abs(command) <= MAX_VELOCITY + 1e-9), command
        if previous is not None:
            faster = np.abs(command - previous) > MAX_CHANGE + 1e-9
            # Only slowing (to zero, or by the position rule) may change faster than the rate limit.
            assert np.all(np.abs(command[faster]) < np.abs(previous[faster]) + 1e-12), (previous, command)
        previous = command
    positions = np.array([q for t, q in harness.joint_states if t > start])
    assert positions.max() <= UPPER + 1e-9 and positions.min() >= LOWER - 1e-9
    # Recorded actions are what was executed: within [-1, 1] and never NaN.
    actions = np.array([np.asarray(t.action) for t in harness.transitions])
    assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0)


def test_emergency_stop_holds_truncates_and_release_resets(joint_arm):
    harness, _, _, tmp_path = joint_arm
    harness.policy = lambda state: np.r_[np.full(N_JOINTS, -0.1), -1.0]
    harness.answer(harness.observations[-1][1])
    count = len(harness.transitions)
    assert wait_until(lambda: len(harness.transitions) >= count + 3, 10), logs(tmp_path)
    episode_before = harness.observations[-1][1].episode
    engaged = time.monotonic()
    assert harness.call_estop(True).success
    stop = _first_zero_after(harness, engaged)
    assert stop - engaged < 2 * PERIOD
    time.sleep(0.2)
    held_transitions, held_observations = len(harness.transitions), len(harness.observations)
    time.sleep(1.0)
    # Held: only zero commands, no new step, no new observation.
    assert all(not np.any(c) for _, c in harness.commands_after(stop + 0.1))
    assert len(harness.transitions) == held_transitions and len(harness.observations) == held_observations
    last = harness.transitions[-1]
    assert last.truncated or last.terminated or harness.observations[-1][1].step > last.step
    assert harness.call_estop(False).success
    assert wait_until(lambda: len(harness.observations) > held_observations, 30), logs(tmp_path)
    first = harness.observations[held_observations][1]
    assert first.episode == episode_before + 1 and first.step == 0
    assert np.all(np.abs(np.asarray(first.state)[:N_JOINTS]) <= 0.02 + 1e-6)  # driven home again


def test_non_finite_action_is_a_missing_action(joint_arm):
    """A NaN answer (e.g. a policy that diverged) is never executed: it counts as a missing
    action, so the watchdog stops the arm within 2 periods of the last valid one; counted in
    the bridge's diagnostics."""
    harness, _, _, tmp_path = joint_arm
    harness.policy = lambda state: np.r_[np.full(N_JOINTS, 0.1), 1.0]
    harness.answer(harness.observations[-1][1])
    count = len(harness.transitions)
    assert wait_until(lambda: len(harness.transitions) >= count + 5, 20), logs(tmp_path)
    assert wait_until(lambda: harness.bridge_health, 5), "no diagnostics from the arm bridge"
    time.sleep(1.2)  # a fresh diagnostics report
    rejected, trips = harness.bridge_counter("rejected_actions"), harness.bridge_counter("watchdog_trips")
    harness.policy = lambda state: np.full(N_JOINTS + 1, np.nan, dtype=np.float32)
    switched = time.monotonic()  # the last valid action went out at most one period before
    stop = _first_zero_after(harness, switched)
    assert stop - switched < 3 * PERIOD
    time.sleep(0.5)
    assert all(not np.any(c) for _, c in harness.commands_after(stop)), "a NaN answer moved the arm"
    assert wait_until(lambda: harness.bridge_counter("rejected_actions") > rejected
                      and harness.bridge_counter("watchdog_trips") > trips, 5), harness.bridge_health
    harness.policy = None
