"""A test double of RLBench 1.2 (and the bits of PyRep it needs), for porl_ros's tests.

It mirrors the module layout, class names, signatures, argument names and return shapes
of the real packages so that ``porl_ros.envs.rlbench_env`` can be exercised without
CoppeliaSim. It was written (not copied) from reading these files of stepjam/RLBench at
commit 02720bba (``rlbench/__init__.py``: ``__version__ = "1.2.0"``):

* ``rlbench/environment.py``          -> ``environment.py`` (``Environment``)
* ``rlbench/task_environment.py``     -> ``task_environment.py`` (``TaskEnvironment``)
* ``rlbench/observation_config.py``   -> ``observation_config.py``
* ``rlbench/backend/observation.py``  -> ``backend/observation.py``
* ``rlbench/backend/exceptions.py``   -> ``backend/exceptions.py``
* ``rlbench/backend/scene.py``, ``backend/task.py``, ``backend/robot.py`` (reduced)
* ``rlbench/action_modes/{action_mode,arm_action_modes,gripper_action_modes}.py``
* ``rlbench/tasks/__init__.py``, ``tasks/reach_target.py``, ``tasks/push_button.py``
* ``rlbench/demo.py``, ``rlbench/const.py``, ``rlbench/noise_model.py``

and of stepjam/PyRep (``pyrep/__init__.py``: ``__version__ = '4.1.0.3'``):
``pyrep/errors.py`` -> ``pyrep/errors.py``, ``pyrep/pyrep.py`` -> ``pyrep/pyrep.py``
(``PyRep`` checks ``COPPELIASIM_ROOT`` exactly as the real one does and, like
CoppeliaSim, refuses calls from any thread but the one that called ``launch``).

Behind the API sits a tiny deterministic kinematic model (``backend/robot.py``): the tip
position is an affine function of the joint positions, joint velocities integrate joint
positions over RLBench's 0.05 s step, the gripper opening moves toward its target, and a
task succeeds when the tip is within a threshold of its goal, so that episodes can
actually succeed and live demos can be generated.

Test-only additions (not part of RLBench) live in ``testing.py``: a log of every
simulator-facing call with ``threading.get_ident()``, and fault injection through the
class attributes ``TaskEnvironment.next_step_error`` (raised by the next ``step``) and
``TaskEnvironment.reset_failures`` (how many coming ``reset`` calls fail).
"""

__version__ = "1.2.0"

from fake_rlbench.action_modes.action_mode import (  # noqa: E402
    ActionMode,
    ArmActionMode,
    GripperActionMode,
)
from fake_rlbench.environment import Environment  # noqa: E402
from fake_rlbench.observation_config import CameraConfig, ObservationConfig  # noqa: E402

__all__ = [
    "ActionMode",
    "ArmActionMode",
    "GripperActionMode",
    "CameraConfig",
    "Environment",
    "ObservationConfig",
]
