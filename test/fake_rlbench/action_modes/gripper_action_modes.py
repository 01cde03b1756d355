"""Mirror of rlbench/action_modes/gripper_action_modes.py (Discrete)."""

from abc import abstractmethod

import numpy as np

from fake_rlbench.backend.exceptions import InvalidActionError


def assert_action_shape(action: np.ndarray, expected_shape: tuple):
    if np.shape(action) != expected_shape:
        raise InvalidActionError(
            "Expected the action shape to be: %s, but was shape: %s" % (
                str(expected_shape), str(np.shape(action))))


class GripperActionMode(object):
    @abstractmethod
    def action(self, scene, action: np.ndarray):
        pass

    @abstractmethod
    def action_shape(self, scene):
        pass

    @abstractmethod
    def action_bounds(self):
        pass


class Discrete(GripperActionMode):
    """Values > 0.5 open the gripper (1), values < 0.5 close it (0)."""

    def __init__(self, attach_grasped_objects: bool = True,
                 detach_before_open: bool = True):
        self._attach_grasped_objects = attach_grasped_objects
        self._detach_before_open = detach_before_open

    def _actuate(self, action, scene):
        done = False
        while not done:
            done = scene.robot.gripper.actuate(action, velocity=0.2)
            scene.pyrep.step()
            scene.task.step()

    def action(self, scene, action: np.ndarray):
        assert_action_shape(action, self.action_shape(scene.robot))
        # RLBench's own range check (a chained comparison that can never be true).
        if 0.0 > action[0] > 1.0:
            raise InvalidActionError("Gripper action expected to be within 0 and 1.")
        open_condition = all(x > 0.9 for x in scene.robot.gripper.get_open_amount())
        current_ee = 1.0 if open_condition else 0.0
        action = float(action[0] > 0.5)
        if current_ee != action:
            if action == 0.0 and self._attach_grasped_objects:
                for g_obj in scene.task.get_graspable_objects():
                    scene.robot.gripper.grasp(g_obj)
            else:
                scene.robot.gripper.release()
            self._actuate(action, scene)
            if action == 1.0:
                for _ in range(10):
                    scene.pyrep.step()
                    scene.task.step()

    def action_shape(self, scene) -> tuple:
        return 1,

    def action_bounds(self):
        return np.array([0]), np.array([1])
