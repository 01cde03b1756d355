"""Mirror of rlbench/action_modes/arm_action_modes.py (JointVelocity,
EndEffectorPoseViaPlanning), with the same checks: action shape and unit quaternion
raise InvalidActionError; a target outside the workspace raises InvalidActionError; a
planning failure (PyRep's ConfigurationPathError) is re-raised as InvalidActionError."""

from abc import abstractmethod
from enum import Enum

import numpy as np

from fake_rlbench.backend.exceptions import InvalidActionError
from fake_rlbench.const import SUPPORTED_ROBOTS
from fake_rlbench.pyrep.errors import ConfigurationPathError, IKError  # noqa: F401


def assert_action_shape(action: np.ndarray, expected_shape: tuple):
    if np.shape(action) != expected_shape:
        raise InvalidActionError(
            "Expected the action shape to be: %s, but was shape: %s" % (
                str(expected_shape), str(np.shape(action))))


def assert_unit_quaternion(quat):
    if not np.isclose(np.linalg.norm(quat), 1.0):
        raise InvalidActionError("Action contained non unit quaternion!")


class RelativeFrame(Enum):
    WORLD = 0
    EE = 1


class ArmActionMode(object):
    @abstractmethod
    def action(self, scene, action: np.ndarray):
        pass

    def action_step(self, scene, action: np.ndarray):
        pass

    def action_pre_step(self, scene, action: np.ndarray):
        pass

    def action_post_step(self, scene, action: np.ndarray):
        pass

    @abstractmethod
    def action_shape(self, scene):
        pass

    def set_control_mode(self, robot):
        robot.arm.set_control_loop_enabled(True)


class JointVelocity(ArmActionMode):
    """Target joint velocities for one simulation step, then zero."""

    def action(self, scene, action: np.ndarray):
        self.action_pre_step(scene, action)
        self.action_step(scene, action)
        self.action_post_step(scene, action)

    def action_pre_step(self, scene, action: np.ndarray):
        assert_action_shape(action, self.action_shape(scene))
        scene.robot.arm.set_joint_target_velocities(action)

    def action_step(self, scene, action: np.ndarray):
        scene.step()

    def action_post_step(self, scene, action: np.ndarray):
        scene.robot.arm.set_joint_target_velocities(np.zeros_like(action))

    def action_shape(self, scene) -> tuple:
        return SUPPORTED_ROBOTS[scene.robot_setup][2],

    def set_control_mode(self, robot):
        robot.arm.set_control_loop_enabled(False)
        robot.arm.set_motor_locked_at_zero_velocity(True)


class EndEffectorPoseViaPlanning(ArmActionMode):
    """Absolute tip pose (x, y, z, qx, qy, qz, qw) in the world frame, reached by a path."""

    def __init__(self, absolute_mode: bool = True,
                 frame: RelativeFrame = RelativeFrame.WORLD,
                 collision_checking: bool = False):
        self._absolute_mode = absolute_mode
        self._frame = frame
        self._collision_checking = collision_checking

    def action(self, scene, action: np.ndarray):
        assert_action_shape(action, (7,))
        assert_unit_quaternion(action[3:])
        if not self._absolute_mode or self._frame != RelativeFrame.WORLD:
            raise NotImplementedError("the test double supports absolute world poses only")
        if not scene.check_target_in_workspace(action[:3]):
            raise InvalidActionError("A path could not be found because the "
                                     "target is outside of workspace.")
        try:
            path = scene.robot.arm.get_path(
                action[:3], quaternion=action[3:],
                ignore_collisions=not self._collision_checking)
        except ConfigurationPathError as e:
            raise InvalidActionError(
                "A path could not be found. Most likely due to the target "
                "being inaccessible or a collison was detected.") from e
        done = False
        while not done:
            done = path.step()
            scene.step()
            success, terminate = scene.task.success()
            if success:
                break

    def action_shape(self, scene) -> tuple:
        return 7,
