"""The learner's TensorBoard scalars, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from porl_ros.monitoring.tensorboard import PHASE_TAG, SUMMARY_TAGS, TensorBoardLogger


def _summary(env_steps: int, phase: str) -> dict:
    # The keys PorlLearner.summary() returns.
    return {"phase": phase, "env_steps": env_steps, "gradient_updates": 2 * env_steps, "actor_updates": 0,
            "policy_version": 3, "episodes": 4, "success_rate": 0.25, "last_episode_return": 12.5,
            "q_calibration_gap": 1.5, "critic_loss": 0.75, "actor_loss": -2.0, "alpha": 0.1, "q_mean": 4.0,
            "replay_size": env_steps, "updates_per_second": 300.0, "env_steps_per_second": 150.0,
            "effective_utd": 2.0, "seq_gaps": 0, "rejected_transitions": 1}


def test_tensorboard_scalars_readable_by_tensorboard(tmp_path):
    log_dir = tmp_path / "learner" / "tensorboard"
    logger = TensorBoardLogger(log_dir)
    assert logger.log_summary(_summary(100, "presample"), {"q_std": 0.5, "entropy": float("nan")})
    assert not logger.log_summary(_summary(100, "presample"))  # env_steps unchanged: nothing new
    assert logger.log_summary(_summary(200, "finetune"), {"q_std": 0.25})
    for steps, success in ((150, True), (250, False)):
        logger.log_episode({"env_steps": steps, "return": 7.0, "success": success, "success_rate": 0.5,
                            "length": 50, "q_calibration_gap": -0.5, "phase": "presample"})
    logger.close()

    events = EventAccumulator(str(log_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = set(SUMMARY_TAGS.values()) | {PHASE_TAG, "update/q_std", "episode/return", "episode/success",
                                             "episode/success_rate", "episode/length", "episode/q_calibration_gap"}
    assert expected <= tags
    assert "update/entropy" not in tags  # NaN values are not written

    def series(tag):
        return [(e.step, e.value) for e in events.Scalars(tag)]

    assert series(PHASE_TAG) == [(100, 0.0), (200, 1.0)]
    assert series("train/critic_loss") == [(100, 0.75), (200, 0.75)]
    assert series("train/q_calibration_gap") == [(100, 1.5), (200, 1.5)]
    assert series("rate/updates_per_second") == [(100, 300.0), (200, 300.0)]
    assert series("update/q_std") == [(100, 0.5), (200, 0.25)]
    assert series("episode/success") == [(150, 1.0), (250, 0.0)]
    assert [v for _, v in series("train/alpha")] == pytest.approx([0.1, 0.1])
