"""Pluggable reward functions for the real-arm bridge (no rclpy).

A reward function is named "module:function" and called as
    function(observation, action, next_observation, **kwargs) -> (reward, success)
with float32 NumPy vectors (the bridge's observation layout, the executed action in
policy units) and the keyword arguments of the bridge's `reward_kwargs` (a JSON object).
`load_reward_function` resolves and checks one before the first step.
"""

from __future__ import annotations

import functools
import importlib
import json
from typing import Callable

import numpy as np

RewardFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, bool]]


def load_reward_function(reference: str, kwargs_json: str, obs_dim: int, act_dim: int) -> RewardFunction:
    """Import "module:function", bind its kwargs, and call it once on zeros so a wrong
    signature or return type fails at start with a clear message, not mid-episode."""
    if ":" not in reference:
        raise ValueError(f"reward function {reference!r} must be 'module:function'")
    module_name, function_name = reference.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"reward function {reference!r}: cannot import {module_name!r}: {e}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"reward function {reference!r}: {module_name} has no callable {function_name!r}")
    try:
        kwargs = json.loads(kwargs_json) if kwargs_json.strip() else {}
    except json.JSONDecodeError as e:
        raise ValueError(f"reward kwargs {kwargs_json!r} are not JSON: {e}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"reward kwargs must be a JSON object, got {kwargs_json!r}")
    bound = functools.partial(function, **kwargs)
    zeros_obs, zeros_act = np.zeros(obs_dim, np.float32), np.zeros(act_dim, np.float32)
    try:
        checked_call(bound, zeros_obs, zeros_act, zeros_obs)
    except Exception as e:  # any failure here is a configuration error
        raise ValueError(f"reward function {reference!r} with kwargs {kwargs} fails on a zero "
                         f"observation ({obs_dim}) / action ({act_dim}): {e}") from None
    return bound


def checked_call(function: RewardFunction, observation, action, next_observation) -> tuple[float, bool]:
    """Call a reward function and insist on a finite float reward and a bool-like success."""
    result = function(observation, action, next_observation)
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"must return (reward, success), returned {result!r}")
    reward, success = float(result[0]), bool(result[1])
    if not np.isfinite(reward):
        raise ValueError(f"returned a non-finite reward {reward}")
    return reward, success


# ---------------------------------------------------------------------- built-ins
def joint_reach(observation, action, next_observation, goal, tolerance: float = 0.05,
                action_cost: float = 0.0) -> tuple[float, bool]:
    """Reach a joint configuration: reward = -||q' - goal|| - action_cost * ||a||^2,
    success when every joint is within `tolerance` (rad) of `goal`. q' is the first
    len(goal) values of the next observation (the bridge puts joint positions first)."""
    goal = np.asarray(goal, dtype=np.float64)
    positions = np.asarray(next_observation[: goal.shape[0]], dtype=np.float64)
    distance = float(np.linalg.norm(positions - goal))
    cost = action_cost * float(np.sum(np.square(action)))
    return -distance - cost, bool(np.all(np.abs(positions - goal) <= tolerance))


def ee_reach(observation, action, next_observation, goal, tolerance: float = 0.02,
             ee_offset: int = -3) -> tuple[float, bool]:
    """Reach an end-effector position: reward = -||p' - goal|| with p' the three values at
    `ee_offset` of the next observation (the bridge appends the position last)."""
    goal = np.asarray(goal, dtype=np.float64)
    start = ee_offset if ee_offset >= 0 else len(next_observation) + ee_offset
    position = np.asarray(next_observation[start:start + 3], dtype=np.float64)
    distance = float(np.linalg.norm(position - goal))
    return -distance, distance <= tolerance
