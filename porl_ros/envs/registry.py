"""Build an environment back-end from a name: ``make_env("metaworld/push-v3")``.

An env id is ``"<prefix>/<name>"``:

* ``metaworld/<task>``  - a Meta-World v3 task (`porl_ros.envs.metaworld_env`), e.g.
  ``metaworld/push-v3``; options: ``terminate_on_success`` (default True).
* ``gymnasium/<id>``    - any registered Gymnasium environment with Box actions
  (`porl_ros.envs.gymnasium_env`), e.g. ``gymnasium/AdroitHandDoor-v1``; other keyword
  arguments go to ``gym.make``.
* ``rlbench/<task>``    - an RLBench task on CoppeliaSim (`porl_ros.envs.rlbench_env`).

Extension point: ``FACTORIES`` maps a prefix to a factory
``factory(name, *, max_episode_steps=None, seed=None, **kwargs) -> EnvBackend``. A new
back-end adds itself with ``register_backend("<prefix>", factory)``
or by adding an entry to ``_BUILTIN`` below (module path, function name; imported lazily
so a missing simulator only fails when it is asked for).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from porl_ros.envs.base import EnvBackend

Factory = Callable[..., EnvBackend]

# prefix -> (module, function), imported on first use.
_BUILTIN: dict[str, tuple[str, str]] = {
    "metaworld": ("porl_ros.envs.metaworld_env", "make_metaworld"),
    "gymnasium": ("porl_ros.envs.gymnasium_env", "make_gymnasium"),
    "rlbench": ("porl_ros.envs.rlbench_env", "make_rlbench"),
}

# prefix -> factory registered at run time (takes precedence over _BUILTIN).
FACTORIES: dict[str, Factory] = {}


def register_backend(prefix: str, factory: Factory) -> None:
    """Make ``make_env("<prefix>/<name>")`` call ``factory(name, ...)``."""
    if not prefix or "/" in prefix:
        raise ValueError(f"backend prefix must be non-empty without '/', got {prefix!r}")
    FACTORIES[prefix] = factory


def known_prefixes() -> list[str]:
    return sorted(set(_BUILTIN) | set(FACTORIES))


def _factory(prefix: str) -> Factory:
    if prefix in FACTORIES:
        return FACTORIES[prefix]
    if prefix in _BUILTIN:
        module, name = _BUILTIN[prefix]
        return getattr(importlib.import_module(module), name)
    raise ValueError(f"unknown environment prefix {prefix!r}; known: "
                     f"{', '.join(known_prefixes())} (env ids look like 'metaworld/push-v3')")


def split_env_id(env_id: str) -> tuple[str, str]:
    """``"metaworld/push-v3"`` -> ``("metaworld", "push-v3")``, with a clear error."""
    if not isinstance(env_id, str) or "/" not in env_id:
        raise ValueError(f"env id must look like '<backend>/<name>' (e.g. "
                         f"'metaworld/push-v3'), got {env_id!r}; backends: "
                         f"{', '.join(known_prefixes())}")
    prefix, name = env_id.split("/", 1)
    if not name:
        raise ValueError(f"env id {env_id!r} has no name after {prefix!r}/")
    return prefix, name


def make_env(env_id: str, *, max_episode_steps: int | None = None, seed: int | None = None,
             terminate_on_success: bool | None = None, **kwargs: Any) -> EnvBackend:
    """Build the back-end named by `env_id` (see the module docstring).

    terminate_on_success: None keeps the back-end's default; True/False is passed on.
    """
    prefix, name = split_env_id(env_id)
    if terminate_on_success is not None:
        kwargs["terminate_on_success"] = bool(terminate_on_success)
    return _factory(prefix)(name, max_episode_steps=max_episode_steps, seed=seed, **kwargs)


def available_env_ids() -> list[str]:
    """The built-in, tested env ids (Meta-World tasks with a checked scripted expert)."""
    from porl_ros.envs.metaworld_env import METAWORLD_TASKS
    return [f"metaworld/{task}" for task in METAWORLD_TASKS]
