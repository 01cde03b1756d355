"""TensorBoard scalars from the dicts the learner already has.

    logger = TensorBoardLogger(run_dir / "tensorboard")
    logger.log_summary(learner.summary(), learner.last_metrics)   # at the status rate
    logger.log_episode(row)                                       # each metrics.jsonl row
    logger.close()

The x axis is env steps everywhere, so curves of the pre-sample and fine-tune stages and
of different runs line up. Open with `tensorboard --logdir runs/`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

from porl_ros.core.phases import FINETUNE

# summary() key -> tag. Losses, Q statistics, temperature, rates and health counters.
SUMMARY_TAGS = {
    "critic_loss": "train/critic_loss",
    "actor_loss": "train/actor_loss",
    "alpha": "train/alpha",
    "q_mean": "train/q_mean",
    "q_calibration_gap": "train/q_calibration_gap",
    "success_rate": "train/success_rate",
    "last_episode_return": "train/last_episode_return",
    "updates_per_second": "rate/updates_per_second",
    "env_steps_per_second": "rate/env_steps_per_second",
    "effective_utd": "rate/effective_utd",
    "gradient_updates": "progress/gradient_updates",
    "policy_version": "progress/policy_version",
    "episodes": "progress/episodes",
    "replay_size": "progress/replay_size",
    "seq_gaps": "health/seq_gaps",
    "rejected_transitions": "health/rejected_transitions",
}
PHASE_TAG = "train/phase_finetune"  # 0 in pre-sample, 1 in fine-tune
# metrics.jsonl row key -> tag: one point per finished episode.
EPISODE_TAGS = {
    "return": "episode/return",
    "success": "episode/success",
    "success_rate": "episode/success_rate",
    "length": "episode/length",
    "q_calibration_gap": "episode/q_calibration_gap",
}
# The agent's last update metrics (critic_loss, q_mean, q_std, actor_loss, alpha_loss,
# alpha, entropy, ...) are logged under this prefix, whatever their names.
UPDATE_PREFIX = "update/"


def _number(value) -> Optional[float]:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class TensorBoardLogger:
    """Writes learner scalars into `log_dir` (an event file per process).

    purge_step: after a resume from env step N, pass N: TensorBoard then hides the
    events a crashed process had written past N, so curves do not fold back.
    """

    def __init__(self, log_dir: str | Path, purge_step: Optional[int] = None, flush_secs: int = 10) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: slow, and only the learner needs it

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step, flush_secs=flush_secs)
        self._last_summary_step: Optional[int] = None

    def log_summary(self, summary: Mapping, update_metrics: Optional[Mapping] = None) -> bool:
        """One point per tag of `PorlLearner.summary()` (and the last update's metrics) at
        its env_steps. Nothing is written while env_steps has not moved (a paused run would
        otherwise stack points on one step); returns whether it wrote."""
        step = int(summary["env_steps"])
        if step == self._last_summary_step:
            return False
        self._last_summary_step = step
        for key, tag in SUMMARY_TAGS.items():
            value = _number(summary.get(key))
            if value is not None:
                self.writer.add_scalar(tag, value, step)
        if "phase" in summary:
            self.writer.add_scalar(PHASE_TAG, float(summary["phase"] == FINETUNE), step)
        for key, raw in (update_metrics or {}).items():
            value = _number(raw)
            if value is not None:
                self.writer.add_scalar(UPDATE_PREFIX + key, value, step)
        return True

    def log_episode(self, row: Mapping) -> None:
        """One point per tag of a metrics.jsonl row (the learner's per-episode record)."""
        step = int(row["env_steps"])
        for key, tag in EPISODE_TAGS.items():
            value = _number(row.get(key))
            if value is not None:
                self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
