"""Registry: env ids, the extension point and the errors for bad names."""

import pytest

from porl_ros.envs import registry
from porl_ros.envs.base import EnvBackend, EnvSpec, StepResult
from porl_ros.envs.registry import make_env


def test_unknown_metaworld_task_lists_known_names():
    with pytest.raises(ValueError) as err:
        make_env("metaworld/psh-v3")
    msg = str(err.value)
    assert "unknown Meta-World task 'psh-v3'" in msg and "push-v3" in msg


def test_unknown_prefix_lists_known_prefixes():
    with pytest.raises(ValueError) as err:
        make_env("mujoco/push-v3")
    msg = str(err.value)
    assert "unknown environment prefix 'mujoco'" in msg
    assert "metaworld" in msg and "gymnasium" in msg


@pytest.mark.parametrize("bad", ["push-v3", "metaworld/", ""])
def test_malformed_ids(bad):
    with pytest.raises(ValueError, match="metaworld/push-v3|no name"):
        make_env(bad)


def test_unknown_gymnasium_id():
    with pytest.raises(ValueError, match="unknown Gymnasium environment 'AdroitHandDor-v1'"):
        make_env("gymnasium/AdroitHandDor-v1")


def test_register_backend_extension_point():
    import numpy as np

    class Dummy(EnvBackend):
        def __init__(self, name, max_episode_steps=None, seed=None):
            self.spec = EnvSpec(f"dummy/{name}", 2, 1, np.array([-1.0]), np.array([1.0]),
                                max_episode_steps or 5)

        def reset(self, seed=None):
            return np.zeros(2, np.float32)

        def step(self, action):
            return StepResult(np.zeros(2, np.float32), 0.0, False, False, False)

    registry.register_backend("dummy", Dummy)
    try:
        env = make_env("dummy/x", max_episode_steps=3)
        assert env.spec.env_id == "dummy/x" and env.spec.max_episode_steps == 3
        assert "dummy" in registry.known_prefixes()
    finally:
        registry.FACTORIES.pop("dummy")
    with pytest.raises(ValueError, match="prefix"):
        registry.register_backend("a/b", Dummy)
