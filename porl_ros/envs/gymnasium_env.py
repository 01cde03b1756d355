"""Any installed Gymnasium environment behind `EnvBackend` (``gymnasium/<env id>``).

Built with ``gym.make(env_id, max_episode_steps=..., disable_env_checker=True, **kwargs)``.
The gymnasium-robotics families (Adroit hand, FrankaKitchen, AntMaze / PointMaze, Fetch)
are registered automatically when ``gymnasium_robotics`` is installed.

Observations
    A ``Box`` observation is flattened (row-major) and cast to float32. A ``Dict``
    observation is flattened into one float32 vector, concatenating its entries in this
    order, recursively for nested dicts (FrankaKitchen's goals are dicts of dicts):
    first ``observation``, ``achieved_goal``, ``desired_goal`` (those present, in that
    order), then every other key in sorted order. Each leaf ``Box`` is flattened row-major.
    ``spec.observation_layout`` names every leaf as ``"path/to/key[size]"``, e.g. AntMaze:
    ``("observation[27]", "achieved_goal[2]", "desired_goal[2]")``. (Other space types,
    e.g. ``Discrete`` observations, are refused.)
Actions
    ``Box`` action spaces only (anything else raises ``TypeError``). Actions are clipped
    to the bounds and cast to the space's dtype (FrankaKitchen wants float64).
Episode ends
    ``terminated`` passes through from the environment (Adroit: never; FrankaKitchen:
    when all its tasks are done; AntMaze: when the goal is reached unless
    ``continuing_task=True``, its default). With ``terminate_on_success=True`` (default
    False here: the environment's own semantics are kept) a success also terminates.
    ``truncated`` is reported when the back-end's step count reaches
    ``max_episode_steps`` (default: the environment's registered limit), or when the
    environment itself truncates.
Success
    ``info['success']`` (Adroit, AntMaze / PointMaze), else ``info['is_success']`` (Fetch),
    else for FrankaKitchen-style envs ``info['tasks_to_complete']`` being empty (all tasks
    done), else False.
Seeding
    ``reset(seed)`` passes the seed to ``env.reset(seed=...)``; ``reset()`` continues the
    environment's generator (the constructor's ``seed`` is used for the first reset).
Temp files
    AntMaze / PointMaze write a maze xml into the system temp dir for every environment;
    the adapter deletes it once the model is loaded.
Markers
    For goal environments with 2- or 3-D goals: ``goal`` (desired_goal) and
    ``achieved_goal`` (z = 0 for 2-D mazes). No joints are exposed (``joint_positions()``
    returns None).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from porl_ros.envs.base import EnvBackend, EnvSpec, StepResult

GOAL_KEYS: tuple[str, ...] = ("observation", "achieved_goal", "desired_goal")

_REGISTERED = False


def register_gymnasium_robotics() -> bool:
    """Register gymnasium-robotics' environments with Gymnasium (once); False if absent."""
    global _REGISTERED
    if _REGISTERED:
        return True
    import gymnasium as gym
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import gymnasium_robotics
            gym.register_envs(gymnasium_robotics)
    except ImportError:
        return False
    _REGISTERED = True
    return True


def _ordered_keys(keys) -> list[str]:
    keys = list(keys)
    first = [k for k in GOAL_KEYS if k in keys]
    return first + sorted(k for k in keys if k not in GOAL_KEYS)


def _layout(space, prefix: str = "") -> list[tuple[tuple[str, ...], int]]:
    """(key path, size) of each leaf of an observation space, in flattening order."""
    from gymnasium import spaces
    if isinstance(space, spaces.Dict):
        out: list[tuple[tuple[str, ...], int]] = []
        for key in _ordered_keys(space.spaces.keys()):
            for path, size in _layout(space.spaces[key]):
                out.append(((key,) + path, size))
        return out
    if isinstance(space, spaces.Box):
        return [((), int(np.prod(space.shape)) if space.shape else 1)]
    raise TypeError(f"unsupported observation space {space!r}: only Box and (nested) Dict "
                    "of Box are supported")


def flatten_observation(obs: Any, paths: list[tuple[tuple[str, ...], int]]) -> np.ndarray:
    """Flatten one (possibly nested dict) observation into float32 in `paths`' order."""
    parts = []
    for path, size in paths:
        value = obs
        for key in path:
            value = value[key]
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
        if arr.size != size:
            raise ValueError(f"observation entry {'/'.join(path) or '<obs>'} has {arr.size} "
                             f"values, the space says {size}")
        parts.append(arr)
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def success_from_info(info: dict[str, Any]) -> bool:
    """The success rule documented in the module docstring."""
    for key in ("success", "is_success"):
        if key in info:
            return bool(np.asarray(info[key]).astype(bool).any())
    if "tasks_to_complete" in info:
        return len(info["tasks_to_complete"]) == 0
    return False


def _to_xyz(value: Any) -> np.ndarray | None:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 3:
        return arr.copy()
    if arr.size == 2:
        return np.array([arr[0], arr[1], 0.0])
    return None


def _remove_maze_xml(env: Any) -> None:
    """Delete the maze xml that AntMaze / PointMaze write into the temp dir per env.

    The model is already loaded from it when ``gym.make`` returns, so it is not needed
    again; without this every environment leaves a file behind.
    """
    import os
    import tempfile
    path = getattr(env.unwrapped, "tmp_xml_file_path", None)
    if not isinstance(path, str) or not path.endswith(".xml"):
        return
    if os.path.dirname(os.path.abspath(path)) != os.path.abspath(tempfile.gettempdir()):
        return
    try:
        os.remove(path)
    except OSError:
        pass


class GymnasiumEnv(EnvBackend):
    """A Gymnasium environment (Box actions; Box or nested Dict observations)."""

    def __init__(self, env_id: str, *, max_episode_steps: int | None = None,
                 seed: int | None = None, terminate_on_success: bool = False,
                 **make_kwargs: Any) -> None:
        import gymnasium as gym
        from gymnasium import spaces

        register_gymnasium_robotics()
        if env_id not in gym.registry:
            close = [k for k in gym.registry if env_id.lower().split("-")[0] in k.lower()]
            hint = f" Similar: {', '.join(sorted(close)[:10])}." if close else ""
            raise ValueError(f"unknown Gymnasium environment {env_id!r} (not registered; "
                             f"is its package installed?).{hint}")
        if max_episode_steps is not None and int(max_episode_steps) <= 0:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, max_episode_steps=max_episode_steps,
                           disable_env_checker=True, **make_kwargs)
        _remove_maze_xml(env)
        if not isinstance(env.action_space, spaces.Box):
            env.close()
            raise TypeError(f"{env_id}: only Box action spaces are supported, got "
                            f"{env.action_space}")
        try:
            self._paths = _layout(env.observation_space)
        except TypeError as exc:
            env.close()
            raise TypeError(f"{env_id}: {exc}") from None
        steps = max_episode_steps
        if steps is None:
            steps = env.spec.max_episode_steps if env.spec is not None else None
        if steps is None:
            env.close()
            raise ValueError(f"{env_id} has no registered episode length; pass "
                             "max_episode_steps")

        self._env = env
        self.terminate_on_success = bool(terminate_on_success)
        self._act_dtype = env.action_space.dtype
        low = np.asarray(env.action_space.low, dtype=np.float32).reshape(-1)
        high = np.asarray(env.action_space.high, dtype=np.float32).reshape(-1)
        self._is_dict = isinstance(env.observation_space, spaces.Dict)
        layout = tuple(f"{'/'.join(p) or 'obs'}[{n}]" for p, n in self._paths)
        self.spec = EnvSpec(
            env_id=f"gymnasium/{env_id}",
            obs_dim=int(sum(n for _, n in self._paths)),
            act_dim=int(low.size),
            action_low=low,
            action_high=high,
            max_episode_steps=int(steps),
            observation_layout=layout,
        )
        self._act_shape = env.action_space.shape
        self._pending_seed = seed
        self._steps = 0
        self._needs_reset = True
        self._last_raw: Any = None

    def _flat(self, obs: Any) -> np.ndarray:
        return flatten_observation(obs, self._paths)

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs, _ = self._env.reset(seed=None if seed is None else int(seed))
        self._steps = 0
        self._needs_reset = False
        self._last_raw = obs
        return self._flat(obs)

    def step(self, action: np.ndarray) -> StepResult:
        if self._needs_reset:
            raise RuntimeError(f"{self.spec.env_id}: call reset() before step() "
                               "(and after an episode ends)")
        act = self.spec.checked_action(action)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs, reward, terminated, truncated, info = self._env.step(
                act.astype(self._act_dtype).reshape(self._act_shape))
        self._steps += 1
        success = success_from_info(info)
        terminated = bool(terminated) or (success and self.terminate_on_success)
        truncated = (not terminated) and (bool(truncated)
                                          or self._steps >= self.spec.max_episode_steps)
        self._needs_reset = terminated or truncated
        self._last_raw = obs
        info = dict(info)
        info["steps"] = self._steps
        return StepResult(observation=self._flat(obs), reward=float(reward),
                          terminated=terminated, truncated=truncated, success=success,
                          info=info)

    def markers(self) -> dict[str, np.ndarray]:
        if not self._is_dict or self._last_raw is None:
            return {}
        out = {}
        for key, name in (("desired_goal", "goal"), ("achieved_goal", "achieved_goal")):
            if key in self._last_raw and not isinstance(self._last_raw[key], dict):
                xyz = _to_xyz(self._last_raw[key])
                if xyz is not None:
                    out[name] = xyz
        return out

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def make_gymnasium(env_id: str, *, max_episode_steps: int | None = None,
                   seed: int | None = None, **kwargs: Any) -> GymnasiumEnv:
    """Registry factory for ``gymnasium/<env id>``."""
    return GymnasiumEnv(env_id, max_episode_steps=max_episode_steps, seed=seed, **kwargs)
