"""PORL hyper-parameters in one validated dataclass.

Every knob of the algorithm lives here so a node can fill it from a ROS parameter file
and a bad value is refused at start, with the field's name, instead of hours later.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _hidden(name: str, value: Any) -> tuple[int, ...]:
    """Accept a list or tuple of positive ints (YAML gives lists) and return a tuple."""
    try:
        out = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of positive ints, got {value!r}") from None
    if not out or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in out):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {value!r}")
    return out


@dataclass
class PorlConfig:
    """Algorithm hyper-parameters (defaults follow the paper and REDQ/RLPD practice)."""

    # Critic ensemble.
    n_critics: int = 10
    n_target_critics: int = 2  # target = min over a random subset of this many target critics
    critic_layer_norm: bool = True
    critic_hidden: tuple[int, ...] = (256, 256)
    # Actor.
    actor_hidden: tuple[int, ...] = (256, 256)
    actor_log_std_min: float = -5.0
    actor_log_std_max: float = 2.0
    # Optimisation.
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 1.0
    target_entropy: Optional[float] = None  # None -> -act_dim
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    utd_ratio: int = 16  # critic updates per env step
    # Critic updates per env step in the pre-sample stage (None: utd_ratio). The actor is
    # frozen there, so this is the cheap place for a higher ratio.
    presample_utd_ratio: Optional[int] = None
    actor_update_every: int = 1  # actor/alpha update every K critic updates (finetune only)
    learning_starts: Optional[int] = None  # replay size before updates start; None -> batch_size
    # PORL stages.
    presample_steps: int = 5000  # T; 0 = finetune from the start
    presample_epsilon: float = 0.1  # epsilon-greedy in the presample stage (used by the caller)
    finetune_epsilon: float = 0.0  # epsilon-greedy in the finetune stage (used by the caller)
    # Runtime.
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")

        def positive_float(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")

        positive_int("n_critics")
        if (not isinstance(self.n_target_critics, int) or isinstance(self.n_target_critics, bool)
                or not 1 <= self.n_target_critics <= self.n_critics):
            raise ValueError(f"n_target_critics must be in 1..n_critics={self.n_critics}, "
                             f"got {self.n_target_critics!r}")
        if not isinstance(self.critic_layer_norm, bool):
            raise ValueError(f"critic_layer_norm must be a bool, got {self.critic_layer_norm!r}")
        self.critic_hidden = _hidden("critic_hidden", self.critic_hidden)
        self.actor_hidden = _hidden("actor_hidden", self.actor_hidden)
        for name in ("actor_log_std_min", "actor_log_std_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not self.actor_log_std_min < self.actor_log_std_max:
            raise ValueError(f"actor_log_std_min must be < actor_log_std_max, got "
                             f"{self.actor_log_std_min} and {self.actor_log_std_max}")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "init_alpha"):
            positive_float(name)
        te = self.target_entropy
        if te is not None and (isinstance(te, bool) or not isinstance(te, (int, float))
                               or not math.isfinite(te)):
            raise ValueError(f"target_entropy must be None or a finite number, got {te!r}")
        positive_int("batch_size")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma!r}")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau!r}")
        positive_int("utd_ratio")
        if self.presample_utd_ratio is not None:
            positive_int("presample_utd_ratio")
        positive_int("actor_update_every")
        if self.learning_starts is not None:
            positive_int("learning_starts")
        positive_int("presample_steps", minimum=0)
        for name in ("presample_epsilon", "finetune_epsilon"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        positive_int("seed", minimum=0)

    @property
    def effective_learning_starts(self) -> int:
        """Replay size at which updates begin (default: one full batch)."""
        return self.batch_size if self.learning_starts is None else self.learning_starts

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples become lists) for JSON / YAML."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PorlConfig":
        """Build from a mapping; an unknown key raises ValueError naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PorlConfig field(s): {', '.join(unknown)}")
        return cls(**values)
