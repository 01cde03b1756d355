"""RLBench 1.2 tasks (CoppeliaSim 4.1 through PyRep) behind `EnvBackend`.

``RLBenchEnv(task="reach_target")`` builds, on its own simulator thread::

    obs_config = ObservationConfig(); obs_config.set_all_high_dim(False)   # no cameras
    obs_config.set_all_low_dim(False); <enable the low-dim fields needed, by name>
    action_mode = MoveArmThenGripper(JointVelocity() | EndEffectorPoseViaPlanning(...),
                                     Discrete())
    env = Environment(action_mode, obs_config=obs_config, headless=True,
                      robot_setup="panda", shaped_rewards=False, ...)
    env.launch(); task_env = env.get_task(rlbench.tasks.ReachTarget)
    descriptions, obs = task_env.reset();  obs, reward, terminate = task_env.step(a)

**One simulator thread.** PyRep makes the thread that calls ``launch()`` CoppeliaSim's
simulation thread, and every later simulator call must come from it. The ROS node may
call this back-end from any executor thread, so the back-end owns one dedicated daemon
thread (``_SimThread``: a queue of calls and ``concurrent.futures.Future`` results) that
imports RLBench, constructs the ``Environment`` and performs every call (launch,
get_task, reset, step, get_demos, set_variation, shutdown). Public methods submit their
work to it and wait; results and exceptions come back to the caller. All of the
back-end's episode state is also mutated only on that thread, so concurrent callers are
serialised. One back-end per process: CoppeliaSim cannot run twice in one process.

**Observation vector** (float32): the named low-dim fields of RLBench's ``Observation``
concatenated in the order given by ``observation_fields``. The default is all of
``Observation.get_low_dim_data()``'s fields in its order (what RLBench's own gym "state"
mode returns): gripper_open[1], joint_velocities[DoF], joint_positions[DoF],
joint_forces[DoF], gripper_pose[7] (tip x, y, z, qx, qy, qz, qw),
gripper_joint_positions[2], gripper_touch_forces[6; the Panda only: the other robots'
grippers have no touch sensors (PyRep raises NotImplementedError), so their default leaves
it out and naming it is refused], task_low_dim_state[task-specific]. ``gripper_matrix`` (16, flattened 4x4) may also be
named. The sizes are read from one reset at construction (task_low_dim_state's size
depends on the task: 3 for reach_target) and listed in ``spec.observation_layout`` as
``"name[size]"``. joint_positions, joint_velocities, gripper_pose and gripper_open are
always recorded (for ``joint_positions()``, ``markers()`` and demonstrations) even when
not part of the vector.

**Actions** (``MoveArmThenGripper``: arm part, then one gripper value):

* ``arm_action_mode="joint_velocity"``: ``JointVelocity()``, DoF joint velocities in
  ``[-arm_velocity_limit, +arm_velocity_limit]`` rad/s (a scalar or one per joint), held
  for one 0.05 s simulation step, then the gripper.
* ``arm_action_mode="ee_pose_planning"``: ``EndEffectorPoseViaPlanning(absolute_mode=True,
  collision_checking=...)``, an absolute world-frame tip pose x, y, z in the box
  ``ee_position_low..ee_position_high`` (the reachable workspace above the table) and a
  quaternion qx, qy, qz, qw in [-1, 1]. The quaternion is normalised before it is sent
  (RLBench raises InvalidActionError for a non-unit quaternion); a (near-)zero one is
  replaced by the current tip orientation.
* gripper: ``Discrete()`` in [0, 1]; > 0.5 opens, < 0.5 closes.

Actions are clipped to the bounds; a wrong size or a non-finite value raises ValueError.

**Rewards and episode ends.** The reward is RLBench's: ``float(success)``, or with
``shaped_rewards=True`` the task's ``reward()`` (only reach_target,
slide_block_to_target and take_lid_off_saucepan define one; RLBench raises otherwise).
``success`` is ``reward >= 1`` (sparse) or RLBench's terminate flag (shaped: those three
tasks have no fail conditions, so terminate means success). ``terminated`` is RLBench's
terminate flag (or success); ``truncated`` is set when ``max_episode_steps`` is reached.

**Failures.** An exception RLBench or PyRep raises during a step because the action could
not be executed (``rlbench.backend.exceptions.InvalidActionError``: bad shape, non-unit
quaternion, target outside the workspace, planning failure; ``pyrep.errors.IKError``;
``pyrep.errors.ConfigurationPathError``) ends the episode: ``truncated=True``, reward 0,
the last observation kept, ``info["error"] = "<Type>: <message>"`` and
``error_counts[<Type>] += 1``, logged as a warning; it never propagates. RLBench re-raises a
planning or IK failure as InvalidActionError ``from`` PyRep's ConfigurationPathError / IKError:
the cause is counted too (``error_counts["ConfigurationPathError"]``, ``info["error_cause"]``). A reset that
fails (``TaskEnvironmentError``, ``BoundaryError``, ``WaypointError``) is retried up to
``max_reset_attempts`` times (also counted in ``error_counts``), then raises
RuntimeError naming the task and the last cause.

**Variations and seeds.** RLBench draws object placements and ``sample_variation()``
from NumPy's global random generator, so ``reset(seed)`` seeds it
(``np.random.seed(seed)``, as RLBench's gym wrapper does). ``variation=<int>`` fixes the
variation (``task_env.set_variation``); ``variation=None`` draws one per reset
(``task_env.sample_variation``).

**Demonstrations** (``demonstrations(n)``, for BC pre-training) come from
``task_env.get_demos(n, live_demos=True)`` (RLBench's scripted motion planner) or, with
``dataset_root`` set and ``live_demos=False``, from a stored dataset. A demo is a list of
observations o_0..o_T recorded every simulation step; the action taken at o_t is derived
from o_{t+1}:

* joint velocity: ``[(o_{t+1}.joint_positions - o_t.joint_positions) / dt, o_{t+1}.gripper_open]``
  with dt = 0.05 s per simulation step (times the stride): RLBench records a demo while
  PyRep's path follower moves the arm under position control, one observation per path
  step, so no velocity command exists to copy; the position change over the step is the
  velocity that reproduces the recorded motion (the observations' joint_velocities are
  instantaneous readings, not what was commanded). Replaying these actions under
  ``JointVelocity`` retraces the demo in the test double exactly; in CoppeliaSim the arm's
  dynamics make it an approximation (a BC target, not a guaranteed replay);
* ee pose: ``[o_{t+1}.gripper_pose (quaternion normalised), o_{t+1}.gripper_open]``;

clipped to the action bounds. ``stride=k`` keeps every k-th observation (o_0, o_k, ...)
and derives the action from the next kept one (useful for the ee-pose mode, where each
action is a planned motion). The task must be ``reset()`` afterwards.

**Installing the real thing** (nothing of it is pip-installable alone): CoppeliaSim 4.1
(``COPPELIASIM_ROOT``, ``LD_LIBRARY_PATH``, ``QT_QPA_PLATFORM_PLUGIN_PATH``), PyRep and
RLBench from GitHub; see ``INSTALL_HELP``. Missing pieces raise ``RLBenchSetupError``
with those instructions (an ``EnvSetupError``: the sim bridge and ``porl-ros run`` report it
as one line and exit non-zero). **X display**: CoppeliaSim 4.1 starts Qt on every launch,
headless too, and without a display the process aborts with a core dump Python cannot catch;
so ``DISPLAY`` is checked before launching and a missing one is an RLBenchSetupError that
says to run under ``xvfb-run -a``. ``backend_module`` (default "rlbench") names the package the
RLBench API is imported from; the tests pass a test double's name ("fake_rlbench").
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import importlib
import logging
import os
import queue
import re
import threading
import types
from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np

from porl_ros.envs.base import EnvBackend, EnvSetupError, EnvSpec, StepResult

_LOG = logging.getLogger(__name__)

# Observation.get_low_dim_data()'s concatenation order (rlbench/backend/observation.py).
LOW_DIM_FIELDS: tuple[str, ...] = (
    "gripper_open", "joint_velocities", "joint_positions", "joint_forces", "gripper_pose",
    "gripper_joint_positions", "gripper_touch_forces", "task_low_dim_state")
# Low-dim fields that may also be named though get_low_dim_data() leaves them out.
EXTRA_FIELDS: tuple[str, ...] = ("gripper_matrix",)
# Only the Panda's gripper has touch sensors: PyRep's other grippers raise
# NotImplementedError('No touch sensors for this robot!') when the field is requested.
TOUCH_FIELD = "gripper_touch_forces"
TOUCH_SENSOR_ROBOTS: tuple[str, ...] = ("panda",)
# RLBench's simulation step (the scenes' dt): a joint velocity is held for this long.
SIM_TIMESTEP_S = 0.05
# Always recorded: joint_positions(), markers() and demonstrations() read them.
_ALWAYS_RECORDED: tuple[str, ...] = (
    "gripper_open", "joint_velocities", "joint_positions", "gripper_pose")

ARM_ACTION_MODES: tuple[str, ...] = ("joint_velocity", "ee_pose_planning")

# rlbench/const.py SUPPORTED_ROBOTS: robot_setup -> arm DoF.
ROBOT_DOF: dict[str, int] = {"panda": 7, "jaco": 6, "mico": 6, "sawyer": 7, "ur5": 6}
# Joint names: the Panda's as in the URDF shipped with RLBench (urdfs/panda/panda.urdf);
# the other arms have no URDF there, so their CoppeliaSim names (PyRep's Arm: "<Name>_jointN").
_ARM_SCENE_NAMES: dict[str, str] = {"jaco": "Jaco", "mico": "Mico", "sawyer": "Sawyer",
                                    "ur5": "UR5"}
PANDA_JOINT_NAMES: tuple[str, ...] = tuple(f"Pandajoint{i}" for i in range(1, 8))

# Tip position box for the ee-pose mode: above the table, inside RLBench's workspace check
# (the table's extent plus 0.2 m, from the table top at z ~ 0.752 to 1 m above it).
DEFAULT_EE_POSITION_LOW: tuple[float, float, float] = (-0.3, -0.5, 0.76)
DEFAULT_EE_POSITION_HIGH: tuple[float, float, float] = (0.7, 0.5, 1.6)

DEFAULT_MAX_EPISODE_STEPS = 200

INSTALL_HELP = """\
The RLBench back-end needs CoppeliaSim 4.1 + PyRep + RLBench 1.2 (none of them is
pip-installable on its own):
  1. CoppeliaSim 4.1.0 (EDU):
       export COPPELIASIM_ROOT=$HOME/CoppeliaSim
       export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$COPPELIASIM_ROOT
       export QT_QPA_PLATFORM_PLUGIN_PATH=$COPPELIASIM_ROOT
       wget https://downloads.coppeliarobotics.com/V4_1_0/CoppeliaSim_Edu_V4_1_0_Ubuntu20_04.tar.xz
       mkdir -p $COPPELIASIM_ROOT && tar -xf CoppeliaSim_Edu_V4_1_0_Ubuntu20_04.tar.xz \\
           -C $COPPELIASIM_ROOT --strip-components 1
     (set the three variables in the shell that starts the node, before Python starts)
  2. PyRep:   pip install git+https://github.com/stepjam/PyRep.git
  3. RLBench: pip install git+https://github.com/stepjam/RLBench.git
  Headless: the simulator runs without a window (headless=True), but rendering cameras
  still needs an X server: run the node under xvfb-run (xvfb-run -a ros2 run ...).\
"""


class RLBenchSetupError(EnvSetupError):
    """CoppeliaSim, PyRep or RLBench is missing or misconfigured (message says what to do)."""


# --------------------------------------------------------------------------------------
# Importing RLBench by module name
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RLBenchApi:
    """The RLBench / PyRep names this back-end uses, imported from one package."""

    Environment: Any
    ObservationConfig: Any
    MoveArmThenGripper: Any
    JointVelocity: Any
    EndEffectorPoseViaPlanning: Any
    Discrete: Any
    tasks: types.ModuleType
    InvalidActionError: type
    TaskEnvironmentError: type
    BoundaryError: type
    WaypointError: type
    IKError: type
    ConfigurationPathError: type
    PyRepError: type


def check_coppeliasim_environment() -> None:
    """Raise RLBenchSetupError unless COPPELIASIM_ROOT names an existing directory and an X
    display is set (DISPLAY; use xvfb-run on a machine without one).

    Also warns when LD_LIBRARY_PATH lacks it or QT_QPA_PLATFORM_PLUGIN_PATH is unset.
    """
    root = os.environ.get("COPPELIASIM_ROOT", "")
    if not root:
        raise RLBenchSetupError("COPPELIASIM_ROOT is not set.\n" + INSTALL_HELP)
    if not os.path.isdir(root):
        raise RLBenchSetupError(
            f"COPPELIASIM_ROOT={root!r} is not an existing directory.\n" + INSTALL_HELP)
    if not os.environ.get("DISPLAY"):
        # CoppeliaSim 4.1 starts Qt on every launch, headless too; without an X display the
        # process aborts with a core dump that Python cannot catch. Say so before launching.
        raise RLBenchSetupError(
            "no X display (DISPLAY is not set): CoppeliaSim 4.1 needs one even when headless and "
            "would abort the whole process. Run under a virtual display: xvfb-run -a <command> "
            "(e.g. xvfb-run -a porl-ros run --env rlbench/reach_target ...), or set DISPLAY.\n"
            + INSTALL_HELP)
    lib_dirs = [os.path.normpath(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":")
                if p]
    if os.path.normpath(root) not in lib_dirs:
        _LOG.warning("LD_LIBRARY_PATH does not contain COPPELIASIM_ROOT (%s); PyRep will "
                     "fail to load libcoppeliaSim", root)
    if not os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH"):
        _LOG.warning("QT_QPA_PLATFORM_PLUGIN_PATH is not set (export "
                     "QT_QPA_PLATFORM_PLUGIN_PATH=$COPPELIASIM_ROOT)")


def import_rlbench(backend_module: str = "rlbench",
                   pyrep_module: str | None = None) -> RLBenchApi:
    """Import RLBench's API from ``backend_module`` (and PyRep's errors from ``pyrep_module``).

    ``pyrep_module`` defaults to "pyrep" for the real "rlbench", and to
    "<backend_module>.pyrep" otherwise (where a test double keeps its PyRep stand-in).
    Raises RLBenchSetupError with installation instructions when an import fails.
    """
    if pyrep_module is None:
        pyrep_module = "pyrep" if backend_module == "rlbench" else f"{backend_module}.pyrep"

    def load(name: str) -> types.ModuleType:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            text = str(exc)
            hint = ""
            if "libcoppeliaSim" in text or "cannot open shared object" in text:
                hint = ("PyRep is installed but cannot load CoppeliaSim's library: "
                        "LD_LIBRARY_PATH must contain $COPPELIASIM_ROOT.\n")
            raise RLBenchSetupError(
                f"Cannot import {name!r} ({type(exc).__name__}: {text}).\n{hint}"
                + INSTALL_HELP) from exc

    def get(module: types.ModuleType, attr: str) -> Any:
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise RLBenchSetupError(
                f"{module.__name__} has no {attr!r}: RLBench 1.2 (the GitHub version) is "
                "needed.\n" + INSTALL_HELP) from exc

    env_mod = load(f"{backend_module}.environment")
    obs_mod = load(f"{backend_module}.observation_config")
    mode_mod = load(f"{backend_module}.action_modes.action_mode")
    arm_mod = load(f"{backend_module}.action_modes.arm_action_modes")
    grip_mod = load(f"{backend_module}.action_modes.gripper_action_modes")
    exc_mod = load(f"{backend_module}.backend.exceptions")
    tasks_mod = load(f"{backend_module}.tasks")
    err_mod = load(f"{pyrep_module}.errors")
    return RLBenchApi(
        Environment=get(env_mod, "Environment"),
        ObservationConfig=get(obs_mod, "ObservationConfig"),
        MoveArmThenGripper=get(mode_mod, "MoveArmThenGripper"),
        JointVelocity=get(arm_mod, "JointVelocity"),
        EndEffectorPoseViaPlanning=get(arm_mod, "EndEffectorPoseViaPlanning"),
        Discrete=get(grip_mod, "Discrete"),
        tasks=tasks_mod,
        InvalidActionError=get(exc_mod, "InvalidActionError"),
        TaskEnvironmentError=get(exc_mod, "TaskEnvironmentError"),
        BoundaryError=get(exc_mod, "BoundaryError"),
        WaypointError=get(exc_mod, "WaypointError"),
        IKError=get(err_mod, "IKError"),
        ConfigurationPathError=get(err_mod, "ConfigurationPathError"),
        PyRepError=get(err_mod, "PyRepError"),
    )


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def task_class_name(task: str) -> str:
    """RLBench's file-name -> class-name rule: "reach_target" -> "ReachTarget"."""
    return "".join(w[:1].upper() + w[1:] for w in task.replace(".py", "").split("_"))


def resolve_task(tasks_module: types.ModuleType, task: str) -> type:
    """The task class for a snake_case name ("reach_target") or a class name ("ReachTarget").

    Raises ValueError listing close matches when there is no such task.
    """
    class_name = task if task[:1].isupper() else task_class_name(task)
    cls = getattr(tasks_module, class_name, None)
    if isinstance(cls, type):
        return cls
    known = sorted(_camel_to_snake(n) for n, v in vars(tasks_module).items()
                   if isinstance(v, type) and not n.startswith("_"))
    close = difflib.get_close_matches(_camel_to_snake(class_name), known, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown RLBench task {task!r} (no class {class_name} in "
                     f"{tasks_module.__name__}).{hint} {len(known)} tasks are available.")


# --------------------------------------------------------------------------------------
# The simulator thread
# --------------------------------------------------------------------------------------

class _SimThread:
    """One daemon thread that runs every submitted call, in order (a 1-worker executor).

    A daemon thread (unlike ThreadPoolExecutor's workers) never blocks interpreter exit
    if CoppeliaSim hangs.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the simulator thread and return its result."""
        if threading.get_ident() == self._thread.ident:  # re-entrant: already there
            return fn(*args, **kwargs)
        if self._closed:
            raise RuntimeError("the RLBench simulator thread has been stopped (close() was "
                               "called)")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((future, fn, args, kwargs))
        return future.result()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)
            else:
                future.set_result(result)

    def stop(self, timeout: float | None = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if threading.get_ident() != self._thread.ident:
            self._thread.join(timeout)


# --------------------------------------------------------------------------------------
# The back-end
# --------------------------------------------------------------------------------------

class RLBenchEnv(EnvBackend):
    """One RLBench task in CoppeliaSim, driven from a dedicated simulator thread."""

    def __init__(self,
                 task: str = "reach_target",
                 *,
                 arm_action_mode: str = "joint_velocity",
                 observation_fields: Sequence[str] | None = None,
                 max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
                 shaped_rewards: bool = False,
                 variation: int | None = 0,
                 robot_setup: str = "panda",
                 headless: bool = True,
                 arm_velocity_limit: float | Sequence[float] = 1.0,
                 ee_position_low: Sequence[float] = DEFAULT_EE_POSITION_LOW,
                 ee_position_high: Sequence[float] = DEFAULT_EE_POSITION_HIGH,
                 collision_checking: bool = False,
                 static_positions: bool = False,
                 dataset_root: str = "",
                 max_reset_attempts: int = 3,
                 seed: int | None = None,
                 backend_module: str = "rlbench",
                 pyrep_module: str | None = None) -> None:
        # ---- argument checks (no simulator needed) ----
        if arm_action_mode not in ARM_ACTION_MODES:
            raise ValueError(f"arm_action_mode must be one of {ARM_ACTION_MODES}, "
                             f"got {arm_action_mode!r}")
        robot_setup = robot_setup.lower()
        if robot_setup not in ROBOT_DOF:
            raise ValueError(f"robot_setup must be one of {sorted(ROBOT_DOF)}, "
                             f"got {robot_setup!r}")
        fields = tuple(default_observation_fields(robot_setup) if observation_fields is None
                       else observation_fields)
        allowed = LOW_DIM_FIELDS + EXTRA_FIELDS
        bad = [f for f in fields if f not in allowed]
        if bad or not fields or len(set(fields)) != len(fields):
            raise ValueError(f"observation_fields must be distinct names from {allowed}, "
                             f"got {fields}")
        if TOUCH_FIELD in fields and robot_setup not in TOUCH_SENSOR_ROBOTS:
            raise ValueError(f"observation field {TOUCH_FIELD}: only the Panda's gripper has touch "
                             f"sensors (RLBench raises NotImplementedError for {robot_setup!r})")
        if max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        if max_reset_attempts <= 0:
            raise ValueError(f"max_reset_attempts must be positive, got {max_reset_attempts}")
        if variation is not None and variation < 0:
            raise ValueError(f"variation must be >= 0 or None, got {variation}")

        self.task_name = task
        self.arm_action_mode = arm_action_mode
        self.observation_fields: tuple[str, ...] = fields
        self.robot_setup = robot_setup
        self.shaped_rewards = bool(shaped_rewards)
        self.max_reset_attempts = int(max_reset_attempts)
        self._dof = ROBOT_DOF[robot_setup]
        self._action_low, self._action_high = self._action_bounds(
            arm_velocity_limit, ee_position_low, ee_position_high)
        self._variation_setting = variation
        self._error_counts: Counter[str] = Counter()
        self._env = None
        self._task_env = None
        self._api: RLBenchApi | None = None
        self._last_obs = None  # RLBench Observation
        self._last_vec: np.ndarray | None = None
        self._field_sizes: dict[str, int] = {}
        self._episode_step = 0
        self._needs_reset = True
        self._closed = False
        self.descriptions: list[str] = []
        self.variation: int | None = variation

        check_coppeliasim_environment()
        self._sim = _SimThread(name=f"rlbench-sim-{task}")
        try:
            first_vec = self._sim.call(
                self._open, backend_module, pyrep_module, headless, collision_checking,
                static_positions, dataset_root, seed)
        except BaseException:
            self._sim.stop()
            self._closed = True
            raise
        layout = tuple(f"{f}[{self._field_sizes[f]}]" for f in self.observation_fields)
        self.spec = EnvSpec(
            env_id=f"rlbench/{task}",
            obs_dim=int(first_vec.shape[0]),
            act_dim=int(self._action_low.shape[0]),
            action_low=self._action_low,
            action_high=self._action_high,
            max_episode_steps=int(max_episode_steps),
            observation_layout=layout,
            joint_names=self._joint_names(),
        )

    # ---- construction helpers ----------------------------------------------------------

    def _action_bounds(self, arm_velocity_limit, ee_low, ee_high):
        if self.arm_action_mode == "joint_velocity":
            lim = np.asarray(arm_velocity_limit, dtype=np.float64).reshape(-1)
            if lim.shape == (1,):
                lim = np.repeat(lim, self._dof)
            if lim.shape != (self._dof,) or not np.all(np.isfinite(lim)) or np.any(lim <= 0):
                raise ValueError(f"arm_velocity_limit must be positive: one value or "
                                 f"{self._dof}, got {arm_velocity_limit}")
            low = np.concatenate([-lim, [0.0]])
            high = np.concatenate([lim, [1.0]])
        else:
            lo = np.asarray(ee_low, dtype=np.float64).reshape(-1)
            hi = np.asarray(ee_high, dtype=np.float64).reshape(-1)
            if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
                raise ValueError(f"ee_position_low/high must be 3 values with low < high, "
                                 f"got {ee_low}, {ee_high}")
            low = np.concatenate([lo, -np.ones(4), [0.0]])
            high = np.concatenate([hi, np.ones(4), [1.0]])
        return low.astype(np.float32), high.astype(np.float32)

    def _joint_names(self) -> tuple[str, ...]:
        if self.robot_setup == "panda":
            return PANDA_JOINT_NAMES
        name = _ARM_SCENE_NAMES[self.robot_setup]
        return tuple(f"{name}_joint{i}" for i in range(1, self._dof + 1))

    def _open(self, backend_module, pyrep_module, headless, collision_checking,
              static_positions, dataset_root, seed) -> np.ndarray:
        """On the simulator thread: import, build, launch, load the task, reset once."""
        api = import_rlbench(backend_module, pyrep_module)
        self._api = api
        task_class = resolve_task(api.tasks, self.task_name)

        obs_config = api.ObservationConfig()
        obs_config.set_all_high_dim(False)
        obs_config.set_all_low_dim(False)
        for name in set(self.observation_fields) | set(_ALWAYS_RECORDED):
            setattr(obs_config, name, True)

        if self.arm_action_mode == "joint_velocity":
            arm_mode = api.JointVelocity()
        else:
            arm_mode = api.EndEffectorPoseViaPlanning(
                absolute_mode=True, collision_checking=bool(collision_checking))
        action_mode = api.MoveArmThenGripper(arm_mode, api.Discrete())

        self._env = api.Environment(
            action_mode, dataset_root=dataset_root, obs_config=obs_config,
            headless=bool(headless), static_positions=bool(static_positions),
            robot_setup=self.robot_setup, shaped_rewards=self.shaped_rewards)
        try:
            try:
                self._env.launch()
            except api.PyRepError as exc:
                raise RLBenchSetupError(
                    f"PyRep could not start CoppeliaSim: {exc}\n" + INSTALL_HELP) from exc
            self._task_env = self._env.get_task(task_class)
            expected = int(self._action_low.shape[0])
            got = int(np.prod(self._env.action_shape))
            if got != expected:
                raise RuntimeError(f"RLBench expects {got} action values for "
                                   f"{self.robot_setup} / {self.arm_action_mode}, this "
                                   f"back-end was built for {expected}")
            if self._variation_setting is not None:
                self._apply_variation(self._variation_setting)
            vec = self._do_reset(seed, measure=True)
        except BaseException:
            self._shutdown_env()
            raise
        return vec

    def _apply_variation(self, v: int) -> None:
        count = int(self._task_env.variation_count())
        if not 0 <= v < count:
            raise ValueError(f"variation {v} out of range: {self.task_name} has {count}")
        self._task_env.set_variation(int(v))
        self.variation = int(v)

    # ---- observation conversion ---------------------------------------------------------

    def _field(self, obs, name: str) -> np.ndarray:
        value = getattr(obs, name, None)
        if value is None:
            raise RuntimeError(f"RLBench observation has no {name!r} although it was "
                               "enabled in the ObservationConfig")
        return np.asarray(value, dtype=np.float32).reshape(-1)

    def _vector(self, obs, measure: bool = False) -> np.ndarray:
        parts = []
        for name in self.observation_fields:
            part = self._field(obs, name)
            if measure:
                self._field_sizes[name] = int(part.shape[0])
            elif part.shape[0] != self._field_sizes[name]:
                raise RuntimeError(f"{self.task_name}: observation field {name} has "
                                   f"{part.shape[0]} values, expected "
                                   f"{self._field_sizes[name]}")
            parts.append(part)
        return np.concatenate(parts).astype(np.float32)

    # ---- episode control (simulator thread) ---------------------------------------------

    def _reset_errors(self) -> tuple[type, ...]:
        api = self._api
        return (api.TaskEnvironmentError, api.BoundaryError, api.WaypointError)

    def _step_errors(self) -> tuple[type, ...]:
        api = self._api
        return (api.InvalidActionError, api.IKError, api.ConfigurationPathError)

    def _do_reset(self, seed: int | None, measure: bool = False) -> np.ndarray:
        if seed is not None:
            np.random.seed(int(seed) % (2 ** 32))
        if self._variation_setting is None:
            self.variation = int(self._task_env.sample_variation())
        last: BaseException | None = None
        for attempt in range(1, self.max_reset_attempts + 1):
            try:
                descriptions, obs = self._task_env.reset()
                break
            except self._reset_errors() as exc:
                last = exc
                self._error_counts[type(exc).__name__] += 1
                _LOG.warning("rlbench/%s: reset attempt %d/%d failed: %s: %s",
                             self.task_name, attempt, self.max_reset_attempts,
                             type(exc).__name__, exc)
        else:
            raise RuntimeError(
                f"RLBench could not reset task {self.task_name!r} after "
                f"{self.max_reset_attempts} attempts; last error: "
                f"{type(last).__name__}: {last}") from last
        self.descriptions = list(descriptions)
        vec = self._vector(obs, measure=measure)
        self._last_obs, self._last_vec = obs, vec
        self._episode_step = 0
        self._needs_reset = False
        return vec

    def _do_step(self, action: np.ndarray) -> StepResult:
        if self._needs_reset:
            raise RuntimeError(f"rlbench/{self.task_name}: call reset() before step() "
                               "(the episode has ended)")
        action = self._finish_action(action)
        self._episode_step += 1
        info: dict[str, Any] = {"episode_step": self._episode_step,
                                "variation": self.variation}
        try:
            obs, reward, terminate = self._task_env.step(action)
        except self._step_errors() as exc:
            name = type(exc).__name__
            self._error_counts[name] += 1
            message = f"{name}: {exc}"
            cause = exc.__cause__
            if cause is not None:
                # RLBench re-raises planning and IK failures (PyRep's ConfigurationPathError,
                # IKError) as InvalidActionError: count the underlying failure too.
                message += f" (caused by {type(cause).__name__}: {cause})"
                if isinstance(cause, self._step_errors()):
                    self._error_counts[type(cause).__name__] += 1
                    info["error_cause"] = type(cause).__name__
            _LOG.warning("rlbench/%s: step %d failed, episode ended: %s",
                         self.task_name, self._episode_step, message)
            self._needs_reset = True
            info.update(error=message, error_type=name, success=False)
            return StepResult(observation=self._last_vec.copy(), reward=0.0,
                              terminated=False, truncated=True, success=False, info=info)
        vec = self._vector(obs)
        self._last_obs, self._last_vec = obs, vec
        reward = float(reward)
        success = bool(terminate) if self.shaped_rewards else reward >= 1.0
        terminated = bool(terminate) or success
        truncated = not terminated and self._episode_step >= self.spec.max_episode_steps
        if terminated or truncated:
            self._needs_reset = True
        info["success"] = success
        return StepResult(observation=vec.copy(), reward=reward, terminated=terminated,
                          truncated=truncated, success=success, info=info)

    def _finish_action(self, action: np.ndarray) -> np.ndarray:
        """Normalise the quaternion of an ee-pose action (the arm's orientation if ~0)."""
        if self.arm_action_mode != "ee_pose_planning":
            return action
        quat = action[3:7]
        norm = float(np.linalg.norm(quat))
        if norm < 1e-6:
            current = self._last_obs.gripper_pose if self._last_obs is not None else None
            quat = (np.asarray(current[3:7], dtype=np.float64) if current is not None
                    else np.array([0.0, 0.0, 0.0, 1.0]))
            norm = float(np.linalg.norm(quat))
        action = action.copy()
        action[3:7] = quat / norm
        return action

    def _shutdown_env(self) -> None:
        env, self._env, self._task_env = self._env, None, None
        if env is not None:
            env.shutdown()

    # ---- EnvBackend ----------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._check_open()
        return self._sim.call(self._do_reset, seed).copy()

    def step(self, action: np.ndarray) -> StepResult:
        self._check_open()
        return self._sim.call(self._do_step, self.spec.checked_action(action, dtype=np.float64))

    def markers(self) -> dict[str, np.ndarray]:
        obs = self._last_obs
        if obs is None:
            return {}
        out: dict[str, np.ndarray] = {}
        if getattr(obs, "gripper_pose", None) is not None:
            out["end_effector"] = np.asarray(obs.gripper_pose, dtype=np.float64)[:3].copy()
        if (self.task_name in ("reach_target", "ReachTarget")
                and getattr(obs, "task_low_dim_state", None) is not None):
            out["goal"] = np.asarray(obs.task_low_dim_state, dtype=np.float64)[:3].copy()
        return out

    def joint_positions(self) -> np.ndarray | None:
        obs = self._last_obs
        if obs is None or getattr(obs, "joint_positions", None) is None:
            return None
        return np.asarray(obs.joint_positions, dtype=np.float64).copy()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sim.call(self._shutdown_env)
        except Exception:  # noqa: BLE001 - closing must not raise
            _LOG.exception("rlbench/%s: shutdown failed", self.task_name)
        finally:
            self._sim.stop()

    def __enter__(self) -> "RLBenchEnv":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- RLBench extras -------------------------------------------------------------------

    @property
    def error_counts(self) -> dict[str, int]:
        """Failures so far, by exception type name (step failures and failed resets)."""
        return dict(self._error_counts)

    @property
    def sim_thread_ident(self) -> int | None:
        """``threading.get_ident()`` of the thread every simulator call runs on."""
        return self._sim.ident

    def variation_count(self) -> int:
        self._check_open()
        return int(self._sim.call(lambda: self._task_env.variation_count()))

    def set_variation(self, variation: int | None) -> None:
        """Fix the task variation (from the next reset on); None draws one per reset."""
        self._check_open()

        def apply():
            if variation is None:
                self._variation_setting = None
            else:
                self._apply_variation(int(variation))
                self._variation_setting = int(variation)
            self._needs_reset = True

        self._sim.call(apply)

    def demonstrations(self, n: int, *, live_demos: bool = True, stride: int = 1,
                       max_attempts: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
        """``n`` demos as (observations [T, obs_dim], actions [T, act_dim]) float32 pairs.

        From ``task_env.get_demos(..., live_demos=live_demos)``; see the module docstring
        for how actions are derived. With ``variation=None`` each demo gets a freshly
        sampled variation. The current episode ends: call ``reset()`` afterwards.
        """
        self._check_open()
        if n <= 0 or stride <= 0:
            raise ValueError(f"n and stride must be positive, got {n}, {stride}")

        def collect():
            self._needs_reset = True
            if self._variation_setting is None:
                demos = []
                for _ in range(n):
                    self.variation = int(self._task_env.sample_variation())
                    demos.extend(self._task_env.get_demos(
                        1, live_demos=live_demos, max_attempts=max_attempts))
            else:
                demos = self._task_env.get_demos(n, live_demos=live_demos,
                                                 max_attempts=max_attempts)
            return [self.demo_to_arrays(d, stride=stride) for d in demos]

        return self._sim.call(collect)

    def demo_to_arrays(self, demo: Sequence[Any], stride: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
        """One demo (a sequence of RLBench Observations) as (observations, actions)."""
        kept = [demo[i] for i in range(0, len(demo), stride)]
        if (len(demo) - 1) % stride:
            kept.append(demo[len(demo) - 1])  # always end at the demo's last observation
        if len(kept) < 2:
            raise ValueError("a demo needs at least two observations")
        gaps = [stride] * (len(kept) - 1)
        if (len(demo) - 1) % stride:
            gaps[-1] = (len(demo) - 1) % stride
        obs = np.stack([self._vector(o) for o in kept[:-1]])
        acts = np.stack([self._demo_action(o, n, gap) for o, n, gap in zip(kept[:-1], kept[1:], gaps)])
        acts = np.clip(acts, self.spec.action_low, self.spec.action_high)
        return obs.astype(np.float32), acts.astype(np.float32)

    def _demo_action(self, obs, next_obs, gap: int) -> np.ndarray:
        """The action that takes `obs` to `next_obs` (`gap` simulation steps later)."""
        gripper = self._field(next_obs, "gripper_open")
        if self.arm_action_mode == "joint_velocity":
            # Real demos are recorded while PyRep's path follower moves the arm under position
            # control, one observation per simulation step: no velocity command was ever sent.
            # The velocity that reproduces the recorded motion is the joint position change
            # over the step (the measured joint_velocities are instantaneous readings).
            delta = (self._field(next_obs, "joint_positions").astype(np.float64)
                     - self._field(obs, "joint_positions").astype(np.float64))
            return np.concatenate([delta / (gap * SIM_TIMESTEP_S), gripper])
        pose = self._field(next_obs, "gripper_pose").astype(np.float64)
        quat = pose[3:7] / max(float(np.linalg.norm(pose[3:7])), 1e-12)
        return np.concatenate([pose[:3], quat, gripper])

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"rlbench/{self.task_name}: the environment is closed")


def default_observation_fields(robot_setup: str) -> tuple[str, ...]:
    """Observation.get_low_dim_data()'s fields for this robot: all of them, but the touch
    forces only where the gripper has touch sensors (the Panda)."""
    if robot_setup.lower() in TOUCH_SENSOR_ROBOTS:
        return LOW_DIM_FIELDS
    return tuple(f for f in LOW_DIM_FIELDS if f != TOUCH_FIELD)


def make_rlbench(name: str, *, max_episode_steps: int | None = None, seed: int | None = None,
                 terminate_on_success: bool | None = None, **kwargs: Any) -> RLBenchEnv:
    """Registry factory for ``"rlbench/<task>"`` (e.g. ``make_env("rlbench/reach_target")``).

    ``seed`` seeds the first reset's placement; other keyword arguments go to RLBenchEnv.
    ``terminate_on_success`` is accepted for the common interface only: an RLBench task
    itself ends its episode (``terminate``) when it succeeds, whatever is asked here.
    """
    if terminate_on_success is False:
        _LOG.info("rlbench/%s: episodes end when the task reports terminate (RLBench's own rule); "
                  "terminate_on_success=False does not change that", name)
    if max_episode_steps is None:
        max_episode_steps = DEFAULT_MAX_EPISODE_STEPS
    return RLBenchEnv(name, max_episode_steps=max_episode_steps, seed=seed, **kwargs)
