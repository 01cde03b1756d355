"""Reduced mirror of rlbench/backend/task.py: the Task hooks RLBench's API relies on."""

import re
from typing import List, Tuple, Union

import numpy as np


class Task(object):
    # Distance (m) between the tip and the task's goal point that counts as success.
    success_threshold = 0.05

    def __init__(self, pyrep, robot, name: str = None):
        self.pyrep = pyrep
        self.robot = robot
        self.name = name or re.sub("(?<!^)(?=[A-Z])", "_", self.__class__.__name__).lower()
        self.goal = np.zeros(3)

    # --- hooks every task defines -------------------------------------------------------
    def init_task(self) -> None:
        pass

    def init_episode(self, index: int) -> List[str]:
        raise NotImplementedError

    def variation_count(self) -> int:
        raise NotImplementedError

    def demo_waypoints(self) -> List[Tuple[str, object]]:
        """Test-double addition: ('move', xyz) / ('gripper', amount) steps for live demos."""
        return [("move", self.goal)]

    # --- defaults as in RLBench ---------------------------------------------------------
    def step(self) -> None:
        pass

    def cleanup(self) -> None:
        pass

    def get_name(self) -> str:
        return self.name

    def get_graspable_objects(self):
        return []

    def decorate_observation(self, observation):
        return observation

    def get_low_dim_state(self) -> np.ndarray:
        raise NotImplementedError

    def success(self) -> Tuple[bool, bool]:
        """(success, should_terminate), as RLBench's Task.success."""
        met = bool(np.linalg.norm(self.robot.arm.tip_position() - self.goal)
                   < self.success_threshold)
        return met, met

    def reward(self) -> Union[float, None]:
        return None
