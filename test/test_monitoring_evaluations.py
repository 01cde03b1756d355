"""Evaluations during a run: the learner's actor snapshots evaluated in order, off the control
loop, written as they come, skipped when already done, and never fatal."""

import json

import numpy as np
import torch

from porl_ros.core.checkpoint import PolicyMeta, save_actor
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.envs.registry import make_env
from porl_ros.monitoring.evaluations import SnapshotEvaluator, read_evaluations, snapshot_name

ENV = "metaworld/reach-v3"


def write_snapshot(directory, steps: int, version: int) -> None:
    env = make_env(ENV)
    spec = env.spec
    env.close()
    torch.manual_seed(steps)
    actor = SquashedGaussianActor(spec.obs_dim, spec.act_dim, (16,), spec.action_low, spec.action_high)
    save_actor(directory / snapshot_name(steps), actor, PolicyMeta.for_actor(actor, ENV, policy_version=version))


def test_snapshots_are_evaluated_in_order_and_resumed(tmp_path):
    snapshots, results = tmp_path / "snapshots", tmp_path / "evaluations.jsonl"
    for steps, version in ((200, 3), (100, 1)):
        write_snapshot(snapshots, steps, version)
    (snapshots / snapshot_name(300)).mkdir()  # being written: no meta.json yet
    messages = []
    evaluator = SnapshotEvaluator(snapshots, results, ENV, episodes=2, episode_steps=20, seed=5,
                                  say=messages.append, poll_s=0.05).start()
    rows = evaluator.finish(timeout_s=120)
    assert [r["env_steps"] for r in rows] == [100, 200] and [r["policy_version"] for r in rows] == [1, 3]
    assert all(r["episodes"] == 2 and 0.0 <= r["success_rate"] <= 1.0 and np.isfinite(r["mean_return"])
               for r in rows)
    assert read_evaluations(results) == rows and len(messages) == 2 and "at 100 env steps" in messages[0]
    # A new evaluator over the same run evaluates only what is new.
    write_snapshot(snapshots, 400, 7)
    again = SnapshotEvaluator(snapshots, results, ENV, episodes=2, episode_steps=20, seed=5,
                              say=messages.append, poll_s=0.05).start().finish(timeout_s=120)
    assert [r["env_steps"] for r in again] == [100, 200, 400] and len(messages) == 3
    assert [json.loads(line)["env_steps"] for line in results.read_text().splitlines()] == [100, 200, 400]


def test_a_corrupt_snapshot_stops_evaluations_without_raising(tmp_path):
    snapshots = tmp_path / "snapshots"
    write_snapshot(snapshots, 100, 1)
    weights = snapshots / snapshot_name(100) / "actor.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    messages = []
    evaluator = SnapshotEvaluator(snapshots, tmp_path / "e.jsonl", ENV, 1, 10, 0, say=messages.append,
                                  poll_s=0.05).start()
    assert evaluator.finish(timeout_s=60) == []
    assert "checksum mismatch" in evaluator.error and "evaluations stopped" in messages[-1]
