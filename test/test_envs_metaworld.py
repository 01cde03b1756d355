"""Meta-World back-end: every built-in task resets, steps, reports success; the scripted
expert solves it; seeded resets are reproducible; truncation/termination semantics."""

import numpy as np
import pytest

from porl_ros.envs.base import EnvBackend, StepResult
from porl_ros.envs.metaworld_env import METAWORLD_TASKS, MetaWorldEnv
from porl_ros.envs.registry import available_env_ids, make_env

REQUIRED = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "button-press-v3"]


def run_expert(env, seed):
    obs = env.reset(seed=seed)
    while True:
        res = env.step(env.expert_action(obs))
        obs = res.observation
        if res.terminated or res.truncated:
            return res


def test_available_env_ids_cover_required_tasks():
    ids = available_env_ids()
    for task in REQUIRED:
        assert f"metaworld/{task}" in ids


@pytest.mark.parametrize("task", list(METAWORLD_TASKS))
def test_task_resets_steps_and_expert_succeeds(task):
    env = make_env(f"metaworld/{task}", max_episode_steps=250)
    try:
        assert isinstance(env, EnvBackend)
        spec = env.spec
        assert spec.env_id == f"metaworld/{task}"
        assert (spec.obs_dim, spec.act_dim, spec.max_episode_steps) == (39, 4, 250)
        assert np.all(spec.action_low == -1) and np.all(spec.action_high == 1)
        assert sum(int(p.split("[")[1][:-1]) for p in spec.observation_layout) == 39
        assert env.has_expert
        obs = env.reset(seed=0)
        assert obs.dtype == np.float32 and obs.shape == (39,)
        res = env.step(np.zeros(4, dtype=np.float32))
        assert isinstance(res, StepResult)
        assert res.observation.dtype == np.float32 and res.observation.shape == (39,)
        assert isinstance(res.reward, float) and isinstance(res.success, bool)
        assert not res.success  # standing still does not solve it
        for seed in (0, 1):
            res = run_expert(env, seed)
            assert res.success, f"expert failed {task} seed {seed}"
            assert res.terminated and not res.truncated  # terminate_on_success default
            assert res.info["steps"] < 250
        markers = env.markers()
        np.testing.assert_allclose(markers["end_effector"], res.observation[0:3])
        np.testing.assert_allclose(markers["goal"], res.observation[-3:])
        first, second, other = env.reset(seed=7), env.reset(seed=7), env.reset(seed=8)
        np.testing.assert_array_equal(first, second)
        assert not np.array_equal(first, other)
        q = env.joint_positions()
        assert q.shape == (7,) and len(spec.joint_names) == 7 and np.all(np.isfinite(q))
    finally:
        env.close()


def test_seeded_reset_reproducible_and_seeds_differ():
    env = make_env("metaworld/push-v3")
    try:
        a = env.reset(seed=3)
        env.step(np.ones(4, dtype=np.float32))
        b = env.reset(seed=3)
        c = env.reset(seed=4)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a[4:7], c[4:7])  # object position differs
        assert not np.allclose(a[-3:], c[-3:])  # goal differs
        # Unseeded resets continue the stream: a new variation each episode.
        d, e = env.reset(), env.reset()
        assert not np.allclose(d[-3:], e[-3:])
    finally:
        env.close()
    # The constructor's seed decides the first unseeded reset; same trajectory twice.
    runs = []
    for _ in range(2):
        env = make_env("metaworld/push-v3", seed=11)
        obs = [env.reset()]
        for _ in range(5):
            obs.append(env.step(env.expert_action(obs[-1])).observation)
        runs.append(np.stack(obs))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_time_limit_is_truncation_not_termination():
    env = make_env("metaworld/reach-v3", max_episode_steps=7)
    try:
        env.reset(seed=0)
        for i in range(7):
            res = env.step(np.zeros(4, dtype=np.float32))
            assert not res.terminated
            assert res.truncated == (i == 6)
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(4, dtype=np.float32))
    finally:
        env.close()


def test_episode_longer_than_metaworld_default():
    env = MetaWorldEnv("reach-v3", max_episode_steps=520, terminate_on_success=False)
    try:
        env.reset(seed=0)
        for i in range(520):
            res = env.step(np.zeros(4, dtype=np.float32))
        assert res.truncated and not res.terminated and res.info["steps"] == 520
    finally:
        env.close()


def test_without_terminate_on_success_the_episode_goes_on():
    env = make_env("metaworld/reach-v3", max_episode_steps=120, terminate_on_success=False)
    try:
        obs = env.reset(seed=0)
        successes = 0
        for _ in range(120):
            res = env.step(env.expert_action(obs))
            obs = res.observation
            successes += res.success
            assert not res.terminated
        assert res.truncated and successes > 1
    finally:
        env.close()


def test_bad_actions_are_refused():
    env = make_env("metaworld/reach-v3")
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="4 values"):
            env.step(np.zeros(3))
        with pytest.raises(ValueError, match="finite"):
            env.step(np.array([0, np.nan, 0, 0]))
    finally:
        env.close()
