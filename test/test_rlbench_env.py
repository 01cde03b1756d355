"""RLBenchEnv against the RLBench 1.2 test double in test/fake_rlbench (no CoppeliaSim)."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_rlbench import testing as fake  # noqa: E402
from fake_rlbench.backend.exceptions import InvalidActionError  # noqa: E402
from fake_rlbench.pyrep.errors import ConfigurationPathError, IKError  # noqa: E402
from fake_rlbench.task_environment import TaskEnvironment  # noqa: E402
from porl_ros.envs.base import EnvBackend  # noqa: E402
from porl_ros.envs.rlbench_env import (  # noqa: E402
    PANDA_JOINT_NAMES,
    RLBenchEnv,
    RLBenchSetupError,
    import_rlbench,
    resolve_task,
)


_ENV_AT_IMPORT = dict(os.environ)  # before the fixture points LD_LIBRARY_PATH at the fake "CoppeliaSim"


@pytest.fixture(autouse=True)
def _fake_sim(monkeypatch, tmp_path):
    monkeypatch.setenv("COPPELIASIM_ROOT", str(tmp_path))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    monkeypatch.setenv("QT_QPA_PLATFORM_PLUGIN_PATH", str(tmp_path))
    monkeypatch.setenv("DISPLAY", ":99")  # CoppeliaSim needs an X display (the double checks it)
    fake.clear()
    yield
    fake.clear()


def make(task="reach_target", **kw):
    kw.setdefault("backend_module", "fake_rlbench")
    kw.setdefault("max_episode_steps", 100)
    return RLBenchEnv(task, **kw)


def toward(goal, gain=0.25):
    """Joint-velocity action moving the fake arm's tip toward goal (uses its kinematics)."""
    arm = fake.ENVIRONMENTS[-1]._robot.arm
    v = arm.velocity_toward(goal, gain)
    return np.concatenate([v, [1.0]])


# ---------------------------------------------------------------------------------------
# spec


def test_spec_default_layout_joint_velocity():
    env = make()
    try:
        assert isinstance(env, EnvBackend)
        s = env.spec
        assert s.env_id == "rlbench/reach_target"
        assert s.observation_layout == (
            "gripper_open[1]", "joint_velocities[7]", "joint_positions[7]",
            "joint_forces[7]", "gripper_pose[7]", "gripper_joint_positions[2]",
            "gripper_touch_forces[6]", "task_low_dim_state[3]")
        assert s.obs_dim == 1 + 7 * 3 + 7 + 2 + 6 + 3 == 40
        assert s.act_dim == 8
        np.testing.assert_allclose(s.action_low, [-1.0] * 7 + [0.0])
        np.testing.assert_allclose(s.action_high, [1.0] * 7 + [1.0])
        assert s.joint_names == PANDA_JOINT_NAMES == tuple(f"Pandajoint{i}" for i in range(1, 8))
        assert s.max_episode_steps == 100
        # the vector follows RLBench's own get_low_dim_data() order
        obs = env.reset(seed=3)
        rl_obs = env._last_obs
        np.testing.assert_allclose(obs, rl_obs.get_low_dim_data().astype(np.float32))
        # cameras off, the named low-dim fields on, on the Environment actually built
        cfg = fake.ENVIRONMENTS[-1]._obs_config
        assert not cfg.front_camera.rgb and not cfg.wrist_camera.depth
        assert rl_obs.front_rgb is None and rl_obs.gripper_matrix is None
        assert fake.ENVIRONMENTS[-1]._headless is True
    finally:
        env.close()


def test_spec_custom_fields_task_sizes_and_velocity_limits():
    env = make("push_button", observation_fields=("joint_positions", "task_low_dim_state"),
               arm_velocity_limit=0.5)
    try:
        assert env.spec.observation_layout == ("joint_positions[7]", "task_low_dim_state[8]")
        assert env.spec.obs_dim == 15
        np.testing.assert_allclose(env.spec.action_high, [0.5] * 7 + [1.0])
        # always recorded even when not in the vector
        assert env.joint_positions().shape == (7,)
        assert env.markers()["end_effector"].shape == (3,)
    finally:
        env.close()


def test_bad_task_name_lists_close_matches():
    with pytest.raises(ValueError, match="reach_target"):
        make("reach_targt")
    import fake_rlbench.tasks as tasks
    assert resolve_task(tasks, "PushButton").__name__ == "PushButton"


def test_bad_arguments_rejected_before_launch():
    with pytest.raises(ValueError, match="arm_action_mode"):
        make(arm_action_mode="torque")
    with pytest.raises(ValueError, match="observation_fields"):
        make(observation_fields=("joint_positions", "front_rgb"))
    with pytest.raises(ValueError, match="variation"):
        make(variation=20)  # reach_target has 20 (0..19): checked after launch ...
    assert fake.CALL_LOG[-1][0] == "pyrep.shutdown"  # ... and the simulator shut down


# ---------------------------------------------------------------------------------------
# reset / step / success


def test_reset_step_and_success_joint_velocity():
    env = make()
    try:
        obs = env.reset(seed=1)
        assert obs.dtype == np.float32 and obs.shape == (env.spec.obs_dim,)
        goal = env.markers()["goal"]
        np.testing.assert_allclose(goal, obs[-3:], atol=1e-6)
        assert env.descriptions[0].startswith("reach the")
        result = None
        for _ in range(env.spec.max_episode_steps):
            result = env.step(toward(goal))
            obs = result.observation
            if result.terminated or result.truncated:
                break
        assert result.success and result.terminated and not result.truncated
        assert result.reward == 1.0
        assert np.linalg.norm(env.markers()["end_effector"] - goal) < 0.05
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(8))
    finally:
        env.close()


def test_time_limit_truncates_and_rewards_are_sparse():
    env = make(max_episode_steps=5)
    try:
        env.reset(seed=0)
        results = [env.step(np.zeros(8, np.float32)) for _ in range(5)]
        assert [r.truncated for r in results] == [False] * 4 + [True]
        assert all(r.reward == 0.0 and not r.success and not r.terminated for r in results)
    finally:
        env.close()


def test_shaped_reward_is_rlbench_task_reward():
    env = make(shaped_rewards=True)
    try:
        obs = env.reset(seed=2)
        r = env.step(np.zeros(8))
        tip, goal = env.markers()["end_effector"], env.markers()["goal"]
        assert r.reward == pytest.approx(-np.linalg.norm(tip - goal), abs=1e-6)
        assert r.reward < 0 and not r.success
    finally:
        env.close()


def test_seed_reproduces_placement_and_variation_sampling():
    env = make(variation=None)
    try:
        a = env.reset(seed=7)
        va = env.variation
        b = env.reset(seed=7)
        assert env.variation == va
        np.testing.assert_array_equal(a, b)
        c = env.reset(seed=8)
        assert not np.array_equal(a[-3:], c[-3:])
        env.set_variation(4)
        env.reset()
        assert env.variation == 4 and "blue" in env.descriptions[0]
        assert env.variation_count() == 20
    finally:
        env.close()


def test_action_is_clipped_and_validated():
    env = make()
    try:
        env.reset(seed=0)
        sent = []
        orig = TaskEnvironment.step

        def spy(self, action):
            sent.append(np.array(action))
            return orig(self, action)

        TaskEnvironment.step = spy
        try:
            env.step(np.array([5.0] * 7 + [3.0]))
        finally:
            TaskEnvironment.step = orig
        np.testing.assert_allclose(sent[0], [1.0] * 7 + [1.0])
        with pytest.raises(ValueError, match="8 values"):
            env.step(np.zeros(7))
        with pytest.raises(ValueError, match="non-finite"):
            env.step(np.full(8, np.nan))
    finally:
        env.close()


# ---------------------------------------------------------------------------------------
# failures


def _invalid_action(cause=None) -> InvalidActionError:
    """What RLBench's step raises: planning and IK failures come re-raised as InvalidActionError
    from PyRep's error (arm_action_modes.py: `raise InvalidActionError(...) from e`)."""
    error = InvalidActionError("A path could not be found." if cause else "bad action")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize("cause", [None, IKError("IK failed"), ConfigurationPathError("no path")],
                         ids=["plain", "ik", "path"])
def test_step_failure_ends_episode_and_is_counted(cause):
    env = make()
    try:
        env.reset(seed=0)
        ok = env.step(np.full(8, 0.1))
        TaskEnvironment.next_step_error = _invalid_action(cause)
        r = env.step(np.full(8, 0.1))
        assert r.truncated and not r.terminated and not r.success and r.reward == 0.0
        np.testing.assert_array_equal(r.observation, ok.observation)
        assert r.info["error"].startswith("InvalidActionError")
        expected = {"InvalidActionError": 1} | ({type(cause).__name__: 1} if cause else {})
        assert env.error_counts == expected
        assert r.info.get("error_cause") == (type(cause).__name__ if cause else None)
        with pytest.raises(RuntimeError):
            env.step(np.zeros(8))
        env.reset()  # usable again
        assert not env.step(np.zeros(8)).truncated
        TaskEnvironment.next_step_error = _invalid_action(type(cause)("again") if cause else None)
        env.step(np.zeros(8))
        assert env.error_counts == {name: 2 * n for name, n in expected.items()}
    finally:
        env.close()


@pytest.mark.parametrize("error", [IKError("IK failed"), ConfigurationPathError("no path")])
def test_bare_pyrep_errors_are_handled_too(error):
    """EndEffectorPoseViaIK/Planning wrap them; other code paths of PyRep may not."""
    env = make()
    try:
        env.reset(seed=0)
        TaskEnvironment.next_step_error = error
        r = env.step(np.full(8, 0.1))
        assert r.truncated and env.error_counts == {type(error).__name__: 1}
    finally:
        env.close()


def test_unexpected_step_exception_propagates():
    env = make()
    try:
        env.reset(seed=0)
        TaskEnvironment.next_step_error = ZeroDivisionError("bug")
        with pytest.raises(ZeroDivisionError):
            env.step(np.zeros(8))
    finally:
        env.close()


def test_reset_failures_are_retried_then_raise():
    env = make(max_reset_attempts=3)
    try:
        TaskEnvironment.reset_failures = 2
        env.reset(seed=0)  # third attempt succeeds
        assert env.error_counts == {"TaskEnvironmentError": 2}
        TaskEnvironment.reset_failures = 3
        with pytest.raises(RuntimeError, match="after 3 attempts.*TaskEnvironmentError"):
            env.reset()
    finally:
        env.close()


# ---------------------------------------------------------------------------------------
# the simulator thread


def test_every_simulator_call_runs_on_one_dedicated_thread():
    env = make()
    caller = threading.get_ident()
    other_results = []
    try:
        env.reset(seed=0)
        env.step(np.zeros(8))

        def from_other_thread():
            other_results.append(env.step(np.zeros(8)))
            other_results.append(env.reset(seed=1))

        t = threading.Thread(target=from_other_thread)
        t.start()
        t.join()
        env.demonstrations(1)
        env.set_variation(3)
        env.reset()
    finally:
        env.close()
    assert len(other_results) == 2
    names = {name for name, _ in fake.CALL_LOG}
    assert {"Environment.__init__", "Environment.launch", "pyrep.launch",
            "Environment.get_task", "reset", "step", "get_demos", "set_variation",
            "pyrep.step", "Environment.shutdown", "pyrep.shutdown"} <= names
    idents = {ident for _, ident in fake.CALL_LOG}
    assert len(idents) == 1, f"simulator called from {len(idents)} threads"
    (sim,) = idents
    assert sim != caller and sim != t.ident
    assert sim == env.sim_thread_ident
    # closed: nothing more reaches the simulator
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()
    env.close()  # idempotent


def test_the_fake_enforces_the_thread_rule():
    """The check above can fail: the double rejects calls from a second thread."""
    from fake_rlbench.pyrep import PyRep

    pr = PyRep()
    pr.launch()
    errors = []
    t = threading.Thread(target=lambda: errors.append(_raises(pr.step)))
    t.start()
    t.join()
    assert isinstance(errors[0], RuntimeError)


def _raises(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


# ---------------------------------------------------------------------------------------
# installation errors


def test_missing_coppeliasim_root_says_what_to_install(monkeypatch):
    monkeypatch.delenv("COPPELIASIM_ROOT")
    with pytest.raises(RLBenchSetupError) as info:
        make()
    text = str(info.value)
    for needle in ("COPPELIASIM_ROOT is not set", "CoppeliaSim 4.1", "LD_LIBRARY_PATH",
                   "QT_QPA_PLATFORM_PLUGIN_PATH", "github.com/stepjam/PyRep",
                   "github.com/stepjam/RLBench", "xvfb-run"):
        assert needle in text
    assert fake.CALL_LOG == []  # failed before touching the simulator


def test_coppeliasim_root_not_a_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("COPPELIASIM_ROOT", str(tmp_path / "nope"))
    with pytest.raises(RLBenchSetupError, match="not an existing directory"):
        make()


def test_missing_rlbench_module_says_what_to_install():
    with pytest.raises(RLBenchSetupError) as info:
        make(backend_module="surely_not_rlbench_xyz")
    text = str(info.value)
    assert "surely_not_rlbench_xyz" in text
    assert "pip install git+https://github.com/stepjam/RLBench.git" in text
    with pytest.raises(RLBenchSetupError, match="fake_rlbench.nopyrep"):
        import_rlbench("fake_rlbench", pyrep_module="fake_rlbench.nopyrep")


def test_real_rlbench_absent_here_gives_setup_error():
    try:
        import rlbench  # noqa: F401
    except ImportError:
        with pytest.raises(RLBenchSetupError, match="rlbench"):
            RLBenchEnv("reach_target")
    else:  # pragma: no cover - only where RLBench is installed
        pytest.skip("RLBench is installed here")


# ---------------------------------------------------------------------------------------
# end-effector pose mode


def test_ee_pose_mode_normalises_quaternion_and_reaches():
    env = make(arm_action_mode="ee_pose_planning", observation_fields=(
        "gripper_open", "gripper_pose", "task_low_dim_state"))
    try:
        s = env.spec
        assert s.act_dim == 8 and s.obs_dim == 1 + 7 + 3
        np.testing.assert_allclose(s.action_low[3:], [-1, -1, -1, -1, 0])
        np.testing.assert_allclose(s.action_high[3:], [1, 1, 1, 1, 1])
        env.reset(seed=4)
        goal = env.markers()["goal"]
        # a non-unit quaternion: RLBench itself would raise InvalidActionError ...
        with pytest.raises(InvalidActionError, match="non unit quaternion"):
            from fake_rlbench.action_modes.arm_action_modes import assert_unit_quaternion
            assert_unit_quaternion([0.0, 0.5, 0.0, 0.0])
        # ... the back-end normalises it first
        r = env.step(np.concatenate([goal, [0.0, 0.5, 0.0, 0.0], [1.0]]))
        assert "error" not in r.info
        assert r.success and r.terminated
        pose = env._last_obs.gripper_pose
        np.testing.assert_allclose(pose[3:], [0.0, 1.0, 0.0, 0.0], atol=1e-9)
        # zero quaternion -> current orientation; still no error
        env.reset(seed=5)
        r = env.step(np.concatenate([env.markers()["end_effector"], np.zeros(4), [1.0]]))
        assert "error" not in r.info and not r.truncated
    finally:
        env.close()


def test_ee_pose_planning_failure_is_an_ended_episode():
    # The fake arm cannot reach far outside the table area: RLBench re-raises the
    # ConfigurationPathError as InvalidActionError.
    env = make(arm_action_mode="ee_pose_planning",
               ee_position_low=(-0.59, -0.79, 0.76), ee_position_high=(0.89, 0.79, 1.7))
    try:
        env.reset(seed=0)
        r = env.step(np.array([-0.59, 0.79, 0.76, 0, 1, 0, 0, 1.0]))
        assert r.truncated and r.reward == 0.0
        assert r.info["error_type"] == "InvalidActionError"
        assert r.info["error_cause"] == "ConfigurationPathError"
        assert "ConfigurationPathError" in r.info["error"]
        assert env.error_counts == {"InvalidActionError": 1, "ConfigurationPathError": 1}
    finally:
        env.close()


# ---------------------------------------------------------------------------------------
# demonstrations


def test_demonstrations_joint_velocity():
    env = make()
    try:
        demos = env.demonstrations(3)
        assert len(demos) == 3
        for obs, act in demos:
            assert obs.dtype == np.float32 and act.dtype == np.float32
            assert obs.ndim == 2 and obs.shape[1] == env.spec.obs_dim
            assert act.shape == (obs.shape[0], env.spec.act_dim)
            assert obs.shape[0] >= 2
            assert np.all(act >= env.spec.action_low) and np.all(act <= env.spec.action_high)
            # action t = (joint positions t+1 - joint positions t) / 0.05 s, gripper_open of t+1
            np.testing.assert_allclose(act[:-1, :7], np.clip((obs[1:, 8:15] - obs[:-1, 8:15]) / 0.05, -1, 1),
                                       atol=1e-4)
            np.testing.assert_allclose(act[:-1, 7], obs[1:, 0])
    finally:
        env.close()


def test_demo_actions_replay_to_success():
    """Only against the test double: its arm follows a velocity exactly, so replaying the derived
    actions retraces the demo. Real demos are recorded per path step while PyRep's path follower
    drives the arm under position control; replayed as JointVelocity commands in CoppeliaSim
    (dynamics, joint motors) they only approximate the path and need not succeed."""
    env = make()
    try:
        np.random.seed(11)
        (obs, act), = env.demonstrations(1)
        # RLBench places objects from NumPy's global RNG: seed 11 gives the demo's scene.
        first = env.reset(seed=11)
        np.testing.assert_allclose(first, obs[0], atol=1e-6)
        result = None
        for a in act:
            result = env.step(a)
            if result.terminated:
                break
        assert result.success
    finally:
        env.close()


def test_demonstrations_ee_pose_with_stride_and_gripper():
    env = make("push_button", arm_action_mode="ee_pose_planning")
    try:
        (obs, act), = env.demonstrations(1, stride=5)
        assert obs.shape[1] == env.spec.obs_dim and act.shape == (obs.shape[0], 8)
        np.testing.assert_allclose(np.linalg.norm(act[:, 3:7], axis=1), 1.0, atol=1e-5)
        assert act[0, 7] == 1.0 and act[-1, 7] == 0.0  # push_button closes the gripper
        with pytest.raises(RuntimeError, match="reset"):
            env.step(act[0])  # demos end the episode
    finally:
        env.close()


def test_registry_factory():
    from porl_ros.envs.rlbench_env import make_rlbench

    env = make_rlbench("push_button", max_episode_steps=None, seed=3,
                       backend_module="fake_rlbench")
    try:
        assert env.spec.env_id == "rlbench/push_button"
        assert env.spec.max_episode_steps == 200
    finally:
        env.close()


# ---------------------------------------------------------------------------------------
# against the real libraries' behaviour (issue 17)


def test_no_display_is_a_setup_error_before_launch(monkeypatch):
    """CoppeliaSim 4.1 aborts the process (an uncatchable core dump) without an X display, even
    headless: the back-end must refuse before launching, and say to use xvfb-run."""
    monkeypatch.delenv("DISPLAY")
    with pytest.raises(RLBenchSetupError, match=r"DISPLAY.*xvfb-run -a"):
        make()
    assert fake.CALL_LOG == []  # never reached the launch that would have aborted


def test_the_fake_aborts_without_a_display_like_coppeliasim(monkeypatch):
    from fake_rlbench.pyrep import PyRep

    monkeypatch.delenv("DISPLAY")
    with pytest.raises(fake.ProcessAborted):
        PyRep().launch("scene.ttt", headless=True)


def test_touch_forces_only_for_the_panda():
    env = make(robot_setup="jaco", max_episode_steps=10)
    try:
        assert "gripper_touch_forces[6]" not in env.spec.observation_layout
        assert env.spec.obs_dim == 1 + 6 * 3 + 7 + 2 + 3
    finally:
        env.close()
    fake.clear()
    with pytest.raises(ValueError, match="gripper_touch_forces.*Panda"):
        make(robot_setup="ur5", observation_fields=("joint_positions", "gripper_touch_forces"))
    assert fake.CALL_LOG == []  # refused before the simulator starts


def test_the_fake_has_touch_sensors_on_the_panda_only():
    from fake_rlbench.backend.robot import FakeGripper

    assert len(FakeGripper("PandaGripper").get_touch_sensor_forces()) == 2
    with pytest.raises(NotImplementedError, match="No touch sensors for this robot!"):
        FakeGripper("JacoGripper").get_touch_sensor_forces()


def test_demo_joint_velocity_actions_with_stride_are_mean_velocities():
    env = make()
    try:
        (obs, act), = env.demonstrations(1, stride=3)
        q = obs[:, 8:15]
        np.testing.assert_allclose(act[:-1, :7], np.clip((q[1:] - q[:-1]) / (3 * 0.05), -1, 1), atol=1e-4)
    finally:
        env.close()


def test_sim_bridge_reports_a_setup_error_without_a_traceback(tmp_path):
    import subprocess

    env = {k: v for k, v in _ENV_AT_IMPORT.items() if k not in ("COPPELIASIM_ROOT", "DISPLAY")}
    result = subprocess.run([sys.executable, "-m", "porl_ros.nodes.sim_bridge", "--ros-args", "-p",
                             "env_id:=rlbench/reach_target"], capture_output=True, text=True, timeout=120,
                            env=env, cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "COPPELIASIM_ROOT is not set" in out and "Traceback" not in out
