"""Like rlbench/tasks/push_button.py: press a button; 18 colour variations; no shaped
reward. Low-dim state (RLBench's default: the poses of the task's objects, plus joint
positions for joints) = button pose (7) + button joint position (1)."""

from typing import List

import numpy as np

from fake_rlbench.backend.task import Task
from fake_rlbench.const import colors as _all_colors

colors = [c for c in _all_colors if c[0] not in ("red", "lime")]  # 18 colours


class PushButton(Task):
    success_threshold = 0.03

    def init_episode(self, index: int) -> List[str]:
        name, _ = colors[index]
        self.button = np.array([np.random.uniform(0.1, 0.4),
                                np.random.uniform(-0.25, 0.25), 0.78])
        self.goal = self.button + np.array([0.0, 0.0, 0.02])
        return ["push the %s button" % name, "push down the %s button" % name,
                "press the button with the %s base" % name, "press the %s button" % name]

    def variation_count(self) -> int:
        return len(colors)

    def demo_waypoints(self):
        return [("move", self.goal + np.array([0.0, 0.0, 0.15])), ("gripper", 0.0),
                ("move", self.goal)]

    def get_low_dim_state(self) -> np.ndarray:
        pressed = float(np.linalg.norm(self.robot.arm.tip_position() - self.goal) < 0.03)
        return np.concatenate([self.button, [0.0, 0.0, 0.0, 1.0], [-0.003 * pressed]])
