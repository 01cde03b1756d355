"""Mirror of rlbench/action_modes/action_mode.py (ActionMode, MoveArmThenGripper)."""

from abc import abstractmethod

import numpy as np

from fake_rlbench.action_modes.arm_action_modes import ArmActionMode  # noqa: F401
from fake_rlbench.action_modes.gripper_action_modes import GripperActionMode  # noqa: F401


class ActionMode(object):
    def __init__(self, arm_action_mode: "ArmActionMode",
                 gripper_action_mode: "GripperActionMode"):
        self.arm_action_mode = arm_action_mode
        self.gripper_action_mode = gripper_action_mode

    @abstractmethod
    def action(self, scene, action: np.ndarray):
        pass

    @abstractmethod
    def action_shape(self, scene):
        pass

    def action_bounds(self):
        raise NotImplementedError("You must define your own action bounds.")


class MoveArmThenGripper(ActionMode):
    """The arm part of the action is applied first, then the gripper part."""

    def action(self, scene, action: np.ndarray):
        arm_act_size = np.prod(self.arm_action_mode.action_shape(scene))
        arm_action = np.array(action[:arm_act_size])
        ee_action = np.array(action[arm_act_size:])
        self.arm_action_mode.action(scene, arm_action)
        self.gripper_action_mode.action(scene, ee_action)

    def action_shape(self, scene):
        return np.prod(self.arm_action_mode.action_shape(scene)) + np.prod(
            self.gripper_action_mode.action_shape(scene))
