"""Mirror of rlbench/tasks/__init__.py: one import per task class (two tasks here)."""

from fake_rlbench.tasks.push_button import PushButton
from fake_rlbench.tasks.reach_target import ReachTarget

__all__ = ["PushButton", "ReachTarget"]
