"""Pure PORL algorithm and data: no rclpy import anywhere in this package."""

from .agent import PorlAgent
from .bc import BCConfig, train_bc
from .checkpoint import (CheckpointError, PolicyMeta, actor_from_bytes, actor_to_bytes, load_actor,
                         save_actor)
from .config import PorlConfig
from .device import resolve_device
from .exploration import EpsilonGreedy, EpsilonSchedule, StagedEpsilon
from .networks import BatchedLayerNorm, BatchedLinear, CriticEnsemble, SquashedGaussianActor
from .phases import FINETUNE, PRESAMPLE, PhaseSchedule
from .replay import Batch, ReplayBuffer, ReplayFileError

__all__ = [
    "PorlAgent", "BCConfig", "train_bc", "CheckpointError", "PolicyMeta", "actor_from_bytes",
    "actor_to_bytes", "load_actor", "save_actor", "PorlConfig", "resolve_device", "EpsilonGreedy",
    "EpsilonSchedule", "StagedEpsilon", "BatchedLayerNorm", "BatchedLinear", "CriticEnsemble",
    "SquashedGaussianActor", "FINETUNE", "PRESAMPLE", "PhaseSchedule", "Batch", "ReplayBuffer",
    "ReplayFileError",
]
