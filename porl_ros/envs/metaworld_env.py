"""Meta-World single tasks (the embedded default simulator) behind `EnvBackend`.

The environment is built with ``gym.make('Meta-World/MT1', env_name=..., seed=...)``
(goal observable, 39-dim observation, 4-dim action in [-1, 1]) and then driven through
its unwrapped ``SawyerXYZEnv`` so that this back-end, not a stack of wrappers, owns the
episode semantics:

* **Task variations.** Meta-World's MT1 draws goal / object positions from a fixed list
  of 50. Here every reset draws a fresh variation uniformly from the task's
  ``_random_reset_space`` (the distribution MT1's list is sampled from), using the
  environment's own seeded generator. ``reset(seed)`` re-seeds that generator, so the
  same seed always gives the same initial state; different seeds give different
  goal / object positions. ``reset()`` without a seed continues the stream (the first
  such reset uses the ``seed`` given to the constructor, if any).
* **terminated.** Meta-World never ends an episode by itself. With
  ``terminate_on_success=True`` (the default: the tasks are judged by success, and a
  solved task has nothing left to learn in that episode) the step on which
  ``info['success']`` first becomes true is reported as ``terminated``. With ``False``
  episodes only end at the time limit.
* **truncated.** Reported (never as ``terminated``) on the step that reaches
  ``max_episode_steps`` (Meta-World's default 500; any positive value works).
* **success** is ``info['success'] == 1``.
* Observations are float32. Rewards are Meta-World's v2 dense rewards (0..10 per step).

Observation layout (39 values):
``hand_pos[3], gripper_opening[1], obj1_pos[3], obj1_quat[4], obj2_pos[3], obj2_quat[4]``,
the same 18 values for the previous frame, then ``goal_pos[3]``. Markers: the hand is
``obs[0:3]``, the goal ``obs[-3:]``. Joint positions: the Sawyer's 7 arm joints
``right_j0..right_j6`` read from the MuJoCo data.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from porl_ros.envs.base import EnvBackend, EnvSpec, StepResult

# Tasks whose scripted experts were checked to solve the task (see test/test_envs_metaworld.py).
# task name -> name of the expert class in metaworld.policies
METAWORLD_TASKS: dict[str, str] = {
    "reach-v3": "SawyerReachV3Policy",
    "push-v3": "SawyerPushV3Policy",
    "pick-place-v3": "SawyerPickPlaceV3Policy",
    "door-open-v3": "SawyerDoorOpenV3Policy",
    "button-press-v3": "SawyerButtonPressV3Policy",
    "drawer-open-v3": "SawyerDrawerOpenV3Policy",
    "drawer-close-v3": "SawyerDrawerCloseV3Policy",
    "window-open-v3": "SawyerWindowOpenV3Policy",
    "window-close-v3": "SawyerWindowCloseV3Policy",
    "peg-insert-side-v3": "SawyerPegInsertionSideV3Policy",
}

DEFAULT_MAX_EPISODE_STEPS = 500

OBSERVATION_LAYOUT: tuple[str, ...] = (
    "hand_pos[3]", "gripper_opening[1]", "obj1_pos[3]", "obj1_quat[4]",
    "obj2_pos[3]", "obj2_quat[4]",
    "prev_hand_pos[3]", "prev_gripper_opening[1]", "prev_obj1_pos[3]", "prev_obj1_quat[4]",
    "prev_obj2_pos[3]", "prev_obj2_quat[4]",
    "goal_pos[3]",
)

ARM_JOINT_NAMES: tuple[str, ...] = tuple(f"right_j{i}" for i in range(7))


def _import_metaworld():
    """Import Meta-World (registers 'Meta-World/*' with Gymnasium), quietly."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import metaworld  # noqa: F401  (registers the environments)
            import metaworld.policies as policies
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "Meta-World is not importable (pip install metaworld==3.1.1 packaging): "
            f"{exc}") from exc
    return policies


def known_metaworld_tasks() -> list[str]:
    """Every Meta-World v3 task name the installed package knows (not all have been vetted)."""
    _import_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    return sorted(ALL_V3_ENVIRONMENTS.keys())


def _expert_class_name(task: str) -> str | None:
    if task in METAWORLD_TASKS:
        return METAWORLD_TASKS[task]
    # Derive "Sawyer<CamelCase>V3Policy" for tasks outside the vetted list.
    base = task[:-3] if task.endswith("-v3") else task
    return "Sawyer" + "".join(p.capitalize() for p in base.split("-")) + "V3Policy"


class MetaWorldEnv(EnvBackend):
    """One Meta-World v3 task (e.g. ``"push-v3"``) with seeded task variations."""

    def __init__(self, task: str, *, max_episode_steps: int | None = None,
                 seed: int | None = None, terminate_on_success: bool = True) -> None:
        policies = _import_metaworld()
        import gymnasium as gym

        known = known_metaworld_tasks()
        if task not in known:
            raise ValueError(f"unknown Meta-World task {task!r}; known: {', '.join(known)}")
        steps = DEFAULT_MAX_EPISODE_STEPS if max_episode_steps is None else int(max_episode_steps)
        if steps <= 0:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")

        self.task = task
        self.terminate_on_success = bool(terminate_on_success)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The passive checker only warns about Meta-World's own (harmless) space quirks.
            wrapped = gym.make("Meta-World/MT1", env_name=task, seed=seed,
                               disable_env_checker=True)
            # The first reset through MT1's wrappers applies its task config (goal
            # observable); from then on the unwrapped env is driven directly.
            wrapped.reset(seed=seed)
        self._wrapped = wrapped
        env = wrapped.unwrapped
        env._freeze_rand_vec = False  # a fresh variation on every reset ...
        env.seeded_rand_vec = True  # ... drawn from env.np_random (seeded below)
        env.max_path_length = steps  # Meta-World refuses steps past this
        self._env = env
        self._pending_seed = seed
        self._steps = 0
        self._needs_reset = True
        self._last_obs: np.ndarray | None = None

        expert_name = _expert_class_name(task)
        expert_cls = getattr(policies, expert_name, None) if expert_name else None
        self._expert = expert_cls() if expert_cls is not None else None

        import mujoco
        model = env.model
        self._arm_qpos_adr = np.array(
            [model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]
             for name in ARM_JOINT_NAMES], dtype=np.int64)

        self.spec = EnvSpec(
            env_id=f"metaworld/{task}",
            obs_dim=39,
            act_dim=4,
            action_low=np.full(4, -1.0, dtype=np.float32),
            action_high=np.full(4, 1.0, dtype=np.float32),
            max_episode_steps=steps,
            observation_layout=OBSERVATION_LAYOUT,
            joint_names=ARM_JOINT_NAMES,
        )

    # -- EnvBackend -------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        if seed is not None:
            self._env.seed(int(seed))
        obs, _ = self._env.reset()
        self._steps = 0
        self._needs_reset = False
        self._last_obs = np.asarray(obs, dtype=np.float32)
        return self._last_obs.copy()

    def step(self, action: np.ndarray) -> StepResult:
        if self._needs_reset:
            raise RuntimeError(f"{self.spec.env_id}: call reset() before step() "
                               "(and after an episode ends)")
        act = self.spec.checked_action(action)
        obs, reward, _, _, info = self._env.step(act)
        self._steps += 1
        success = bool(float(info.get("success", 0.0)) >= 1.0)
        terminated = success and self.terminate_on_success
        truncated = (not terminated) and self._steps >= self.spec.max_episode_steps
        self._needs_reset = terminated or truncated
        self._last_obs = np.asarray(obs, dtype=np.float32)
        info = dict(info)
        info["steps"] = self._steps
        return StepResult(observation=self._last_obs.copy(), reward=float(reward),
                          terminated=terminated, truncated=truncated, success=success,
                          info=info)

    @property
    def has_expert(self) -> bool:
        return self._expert is not None

    def expert_action(self, observation: np.ndarray) -> np.ndarray:
        if self._expert is None:
            raise NotImplementedError(f"{self.spec.env_id} has no scripted expert")
        obs = np.asarray(observation, dtype=np.float64).reshape(-1)
        with warnings.catch_warnings():
            # The experts warn on every call that their gains may saturate the action.
            warnings.simplefilter("ignore")
            act = np.asarray(self._expert.get_action(obs), dtype=np.float32)
        return np.clip(act, self.spec.action_low, self.spec.action_high)

    def markers(self) -> dict[str, np.ndarray]:
        if self._last_obs is None:
            return {}
        return {"end_effector": self._last_obs[0:3].copy(), "goal": self._last_obs[-3:].copy()}

    def joint_positions(self) -> np.ndarray | None:
        return np.asarray(self._env.data.qpos[self._arm_qpos_adr], dtype=np.float64).copy()

    def close(self) -> None:
        if self._wrapped is not None:
            self._wrapped.close()
            self._wrapped = None


def make_metaworld(task: str, *, max_episode_steps: int | None = None,
                   seed: int | None = None, **kwargs: Any) -> MetaWorldEnv:
    """Registry factory for ``metaworld/<task>``."""
    return MetaWorldEnv(task, max_episode_steps=max_episode_steps, seed=seed, **kwargs)


FACTORY: Callable[..., EnvBackend] = make_metaworld
