"""Like rlbench/tasks/reach_target.py: reach a coloured target; low-dim state = its xyz;
20 colour variations; shaped reward = -distance(tip, target)."""

from typing import List

import numpy as np

from fake_rlbench.backend.task import Task
from fake_rlbench.const import colors

# Spawn box of the target (inside the workspace, reachable by the fake arm).
TARGET_LOW = np.array([0.05, -0.3, 0.85])
TARGET_HIGH = np.array([0.45, 0.3, 1.3])


class ReachTarget(Task):
    def init_episode(self, index: int) -> List[str]:
        color_name, _ = colors[index]
        self.goal = np.random.uniform(TARGET_LOW, TARGET_HIGH)
        return ["reach the %s target" % color_name,
                "touch the %s ball with the panda gripper" % color_name,
                "reach the %s sphere" % color_name]

    def variation_count(self) -> int:
        return len(colors)

    def get_low_dim_state(self) -> np.ndarray:
        return np.array(self.goal)

    def reward(self) -> float:
        return -float(np.linalg.norm(self.goal - self.robot.arm.tip_position()))
