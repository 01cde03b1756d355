"""Mirror of rlbench/environment.py (Environment) over the fake scene."""

from os.path import exists
from typing import List, Type

from fake_rlbench import testing
from fake_rlbench.action_modes.action_mode import ActionMode
from fake_rlbench.backend.robot import FakeArm, FakeGripper, Robot
from fake_rlbench.backend.scene import Scene
from fake_rlbench.const import SUPPORTED_ROBOTS
from fake_rlbench.demo import Demo
from fake_rlbench.observation_config import ObservationConfig
from fake_rlbench.pyrep import PyRep
from fake_rlbench.task_environment import TaskEnvironment

TTT_FILE = "task_design.ttt"


class Environment(object):
    """Each environment has a scene."""

    def __init__(self,
                 action_mode: ActionMode,
                 dataset_root: str = "",
                 obs_config: ObservationConfig = ObservationConfig(),
                 headless: bool = False,
                 static_positions: bool = False,
                 robot_setup: str = "panda",
                 randomize_every=None,
                 frequency: int = 1,
                 visual_randomization_config=None,
                 dynamics_randomization_config=None,
                 attach_grasped_objects: bool = True,
                 shaped_rewards: bool = False,
                 arm_max_velocity: float = 1.0,
                 arm_max_acceleration: float = 4.0):
        testing.record("Environment.__init__")
        self._dataset_root = dataset_root
        self._action_mode = action_mode
        self._obs_config = obs_config
        self._headless = headless
        self._static_positions = static_positions
        self._robot_setup = robot_setup.lower()
        self._randomize_every = randomize_every
        self._attach_grasped_objects = attach_grasped_objects
        self._shaped_rewards = shaped_rewards
        self._arm_max_velocity = arm_max_velocity
        self._arm_max_acceleration = arm_max_acceleration
        if robot_setup not in SUPPORTED_ROBOTS.keys():
            raise ValueError("robot_configuration must be one of %s" %
                             str(SUPPORTED_ROBOTS.keys()))
        if (randomize_every is not None and visual_randomization_config is None
                and dynamics_randomization_config is None):
            raise ValueError(
                "If domain randomization is enabled, must supply either "
                "visual_randomization_config or dynamics_randomization_config")
        if len(self._dataset_root) > 0 and not exists(self._dataset_root):
            raise RuntimeError("Data set root does not exists: %s" % self._dataset_root)
        self._pyrep = None
        self._robot = None
        self._scene = None
        self._prev_task = None
        testing.ENVIRONMENTS.append(self)

    def launch(self):
        testing.record("Environment.launch")
        if self._pyrep is not None:
            raise RuntimeError("Already called launch!")
        self._pyrep = PyRep()
        self._pyrep.launch(TTT_FILE, headless=self._headless)
        arm_name, gripper_name, dof = SUPPORTED_ROBOTS[self._robot_setup]
        arm = FakeArm(arm_name, dof, max_velocity=self._arm_max_velocity,
                      max_acceleration=self._arm_max_acceleration)
        self._robot = Robot(arm, FakeGripper(gripper_name))
        self._scene = Scene(self._pyrep, self._robot, self._obs_config, self._robot_setup)
        self._action_mode.arm_action_mode.set_control_mode(self._robot)

    def shutdown(self):
        testing.record("Environment.shutdown")
        if self._pyrep is not None:
            self._pyrep.shutdown()
        self._pyrep = None

    def get_task(self, task_class: Type) -> TaskEnvironment:
        testing.record("Environment.get_task")
        if self._pyrep is None:
            self.launch()
        self._scene.unload()
        task = task_class(self._pyrep, self._robot)
        self._prev_task = task
        return TaskEnvironment(
            self._pyrep, self._robot, self._scene, task, self._action_mode,
            self._dataset_root, self._obs_config, self._static_positions,
            self._attach_grasped_objects, self._shaped_rewards)

    @property
    def action_shape(self):
        return self._action_mode.action_shape(self._scene),

    def get_demos(self, task_name: str, amount: int, variation_number=0,
                  image_paths=False, random_selection: bool = True,
                  from_episode_number: int = 0) -> List[Demo]:
        if self._dataset_root is None or len(self._dataset_root) == 0:
            raise RuntimeError("Can't ask for a stored demo when no dataset root provided.")
        raise NotImplementedError("the test double has no stored demos")
