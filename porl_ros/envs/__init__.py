"""Environment back-ends behind one small interface (embedded simulator, Gymnasium, RLBench).

``make_env("metaworld/push-v3")`` / ``make_env("gymnasium/AdroitHandDoor-v1")`` build one
(see `porl_ros.envs.registry`); simulators are imported only when asked for.
"""

from porl_ros.envs.base import EnvBackend, EnvSpec, StepResult
from porl_ros.envs.registry import available_env_ids, make_env, register_backend

__all__ = ["EnvBackend", "EnvSpec", "StepResult", "available_env_ids", "make_env",
           "register_backend"]
