"""A reward function that takes its time (a heavy user function), for the arm bridge tests."""

import time

from porl_ros.rewards import joint_reach


def slow_joint_reach(observation, action, next_observation, seconds: float = 0.0, **kwargs):
    time.sleep(seconds)
    return joint_reach(observation, action, next_observation, **kwargs)
