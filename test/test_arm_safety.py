"""The arm bridge's pure safety rules and reward plumbing (no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from porl_ros import rewards
from porl_ros.core import safety

PERIOD = 0.05


def _joint_limits(**overrides):
    args = dict(num_joints=3, position_lower=[-1.0], position_upper=[1.0], max_velocity=[0.5, 0.5, 0.2],
                max_change=[0.1], position_margin=0.05, period=PERIOD)
    args.update(overrides)
    return safety.JointLimits.build(**args)


def test_joint_filter_never_exceeds_speed_rate_or_position_rules():
    limits = _joint_limits()
    rng = np.random.default_rng(0)
    previous = np.zeros(3)
    for _ in range(2000):
        positions = rng.uniform(-1.1, 1.1, 3)
        command = rng.normal(0, 5, 3)
        safe, _ = safety.filter_joint_velocity(command, positions, previous, limits)
        assert np.all(np.abs(safe) <= limits.max_velocity + 1e-12)
        # Faster than the rate limit only when it is slowing down (the position rule).
        too_fast = np.abs(safe - previous) > limits.max_change + 1e-12
        assert np.all(np.abs(safe[too_fast]) < np.abs(previous[too_fast]))
        # Never outward inside the margin, never across the margin within one period.
        inner_up, inner_down = 1.0 - 0.05, -1.0 + 0.05
        assert np.all(safe[positions >= inner_up] <= 0) and np.all(safe[positions <= inner_down] >= 0)
        ahead = positions + safe * PERIOD
        inside = (positions < inner_up) & (positions > inner_down)
        assert np.all(ahead[inside] <= inner_up + 1e-9) and np.all(ahead[inside] >= inner_down - 1e-9)
        previous = safe


def test_joint_near_limit_may_move_inward_only():
    limits = _joint_limits(max_change=[10.0])
    safe, report = safety.filter_joint_velocity([0.4, -0.4, 0.1], [0.97, 0.97, -0.99], np.zeros(3), limits)
    assert safe[0] == 0.0 and safe[1] == pytest.approx(-0.4) and safe[2] == pytest.approx(0.1)
    assert report.position_limited


def test_rate_limit_ramps_a_step_command():
    limits = _joint_limits()
    previous = np.zeros(3)
    ramp = []
    for _ in range(6):
        previous, report = safety.filter_joint_velocity([0.5, 0.5, 0.5], np.zeros(3), previous, limits)
        ramp.append(previous[0])
    assert ramp == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5])


@pytest.mark.parametrize("bad", [[np.nan, 0, 0], [0, np.inf, 0], [0, 0]])
def test_non_finite_or_wrong_size_commands_are_refused(bad):
    with pytest.raises(ValueError, match="joint velocity command"):
        safety.filter_joint_velocity(bad, np.zeros(3), np.zeros(3), _joint_limits())


def test_limits_refuse_bad_configuration_naming_the_field():
    with pytest.raises(ValueError, match="joint_position_lower"):
        _joint_limits(position_lower=[-1.0, -1.0])
    with pytest.raises(ValueError, match="wider than 2"):
        _joint_limits(position_lower=[0.95])
    with pytest.raises(ValueError, match="workspace_min"):
        safety.CartesianLimits.build(0.1, 0.1, 0.1, 0.1, [0, 0], [1, 1, 1], 0.01, PERIOD)


def test_twist_outward_component_is_zeroed_at_the_box_face():
    box = safety.CartesianLimits.build(0.1, 0.2, 1.0, 1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 0.01, PERIOD)
    # At the +x face (inner edge of the margin): outward x zeroed, y and z untouched; inward x allowed.
    linear, angular, report = safety.filter_twist([0.1, 0.05, -0.05], [0, 0, 0.5], [0.99, 0.5, 0.5],
                                                  np.zeros(3), np.zeros(3), box)
    assert linear == pytest.approx([0.0, 0.05, -0.05]) and angular == pytest.approx([0, 0, 0.2])
    assert report.workspace_limited and report.velocity_clamped
    linear, _, _ = safety.filter_twist([-0.1, 0, 0], [0, 0, 0], [0.995, 0.5, 0.5], np.zeros(3), np.zeros(3), box)
    assert linear[0] == pytest.approx(-0.1)
    # Short of the face: slowed so one period cannot cross into the margin.
    linear, _, _ = safety.filter_twist([0.1, 0, 0], [0, 0, 0], [0.988, 0.5, 0.5], np.zeros(3), np.zeros(3), box)
    assert 0.988 + linear[0] * PERIOD <= 0.99 + 1e-12


def test_drift_out_of_the_box_is_pulled_back_within_speed_and_rate_limits():
    box = safety.CartesianLimits.build(0.1, 0.2, 0.02, 1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 0.01, PERIOD)
    # Drifted past the +x face and below the -z face, holding still: pulled inward on both,
    # ramped by the rate limit (0.02 per period) from the previous command.
    linear, _, report = safety.filter_twist([0, 0, 0], [0, 0, 0], [1.05, 0.5, -0.2], np.zeros(3), np.zeros(3), box)
    assert linear == pytest.approx([-0.02, 0.0, 0.02]) and report.workspace_limited
    # Ramped up to the speed limit, never beyond; an outward command is overridden.
    linear, _, _ = safety.filter_twist([0.1, 0, 0], [0, 0, 0], [1.05, 0.5, 0.5], [-0.09, 0, 0], np.zeros(3), box)
    assert linear[0] == pytest.approx(-0.1)
    # Just inside the margin: a gentle pull that closes the gap in one period.
    linear, _, _ = safety.filter_twist([0, 0, 0], [0, 0, 0], [0.5, 0.5, 0.0095], np.zeros(3), np.zeros(3), box)
    assert linear[2] == pytest.approx(0.0005 / PERIOD) and 0.0095 + linear[2] * PERIOD == pytest.approx(0.01)
    # Inside the box nothing changes.
    linear, _, report = safety.filter_twist([0.01, 0, 0], [0, 0, 0], [0.5, 0.5, 0.5], np.zeros(3), np.zeros(3), box)
    assert linear == pytest.approx([0.01, 0, 0]) and not report.workspace_limited


def test_watchdog_state_machine():
    monitor = safety.SafetyMonitor(safety.Watchdog(timeout_s=0.075))
    assert monitor.update(0.0, ("action",)) == safety.WATCHDOG_STOP  # never fed: stale
    monitor.watchdog.feed("action", 1.0)
    assert monitor.update(1.05, ("action",)) == safety.RUNNING
    assert monitor.update(1.08, ("action",)) == safety.WATCHDOG_STOP and monitor.stale_inputs == ["action"]
    assert monitor.update(1.08, ()) == safety.RUNNING  # nothing required (arm idle)
    monitor.engage_emergency_stop()
    monitor.watchdog.feed("action", 2.0)
    assert monitor.update(2.0, ("action",)) == safety.EMERGENCY_STOP and not monitor.motion_allowed
    monitor.release_emergency_stop()
    assert monitor.update(2.0, ("action",)) == safety.RUNNING
    assert monitor.watchdog_trips == 2


def test_reward_function_is_loaded_bound_and_checked():
    function = rewards.load_reward_function("porl_ros.rewards:joint_reach", '{"goal": [0.5, 0.5], "tolerance": 0.1}',
                                            obs_dim=5, act_dim=2)
    reward, success = rewards.checked_call(function, np.zeros(5), np.zeros(2), np.array([0.45, 0.55, 0, 0, 0]))
    assert reward == pytest.approx(-np.hypot(0.05, 0.05)) and success
    with pytest.raises(ValueError, match="module:function"):
        rewards.load_reward_function("porl_ros.rewards.joint_reach", "{}", 5, 2)
    with pytest.raises(ValueError, match="no callable 'nope'"):
        rewards.load_reward_function("porl_ros.rewards:nope", "{}", 5, 2)
    with pytest.raises(ValueError, match="not JSON"):
        rewards.load_reward_function("porl_ros.rewards:joint_reach", "{goal", 5, 2)
    with pytest.raises(ValueError, match="fails on a zero observation"):  # missing the required goal
        rewards.load_reward_function("porl_ros.rewards:joint_reach", "{}", 5, 2)


def test_arm_config_sets_only_declared_parameters_and_graph_names_the_arm_bridge():
    from pathlib import Path

    import yaml

    from porl_ros import graph
    from porl_ros.core.settings import field_names
    from porl_ros.nodes.settings import NODE_SETTINGS

    data = yaml.safe_load((Path(graph.source_config_dir()) / "arm.yaml").read_text())
    declared = {name: NODE_SETTINGS[name] for name in ("arm_bridge", "sim_hardware")}
    for key, section in data.items():
        names = set(field_names(*declared[key.split("/")[-1]]))
        assert set(section["ros__parameters"]) <= names, set(section["ros__parameters"]) - names
    nodes = {spec.name: spec for spec in graph.finetune_graph(2, bridge="arm")}
    assert "arm_bridge" in nodes and "sim_bridge" not in nodes
    assert nodes["arm_bridge"].module == "porl_ros.nodes.arm_bridge"
    default = [spec.name for spec in graph.finetune_graph(1)]
    assert "sim_bridge" in default and "arm_bridge" not in default  # default unchanged
    with pytest.raises(ValueError, match="unknown bridge"):
        graph.finetune_graph(1, bridge="robot")
