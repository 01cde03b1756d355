"""Pure PORL algorithm and data: no rclpy import anywhere in this package."""

from .agent import PorlAgent
from .bc import BCConfig, train_bc
from .checkpoint import (CheckpointError, PolicyMeta, actor_from_bytes, actor_to_bytes, load_actor,
                         save_actor)
from .config import PorlConfig
from .device import resolve_device
from .exploration import ActionChooser, EpsilonGreedy, EpsilonSchedule, ExplorationConfig, StagedEpsilon
from .networks import BatchedLayerNorm, BatchedLinear, CriticEnsemble, SquashedGaussianActor
from .phases import DONE, FINETUNE, PRESAMPLE, PhaseSchedule
from .replay import Batch, ReplayBuffer, ReplayFileError
from .rollout import EnvStepper, EpisodeBook, EpisodeSettings, fine_tuning_step
from .settings import Settings, SettingError

__all__ = [
    "PorlAgent", "BCConfig", "train_bc", "CheckpointError", "PolicyMeta", "actor_from_bytes",
    "actor_to_bytes", "load_actor", "save_actor", "PorlConfig", "resolve_device", "ActionChooser",
    "EpsilonGreedy", "EpsilonSchedule", "ExplorationConfig", "StagedEpsilon", "BatchedLayerNorm",
    "BatchedLinear", "CriticEnsemble", "SquashedGaussianActor", "DONE", "FINETUNE", "PRESAMPLE",
    "PhaseSchedule", "Batch", "ReplayBuffer", "ReplayFileError", "EnvStepper", "EpisodeBook",
    "EpisodeSettings", "fine_tuning_step", "Settings", "SettingError",
]
