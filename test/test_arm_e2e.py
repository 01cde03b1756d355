"""The whole fine-tuning graph (learner, policy server, exploration controller) through the
real-arm bridge, over DDS: `porl-ros run --bridge arm` against sim_hardware standing in for
the robot's drivers, with the shipped config/arm.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from arm_harness import Harness
from porl_ros.core.checkpoint import save_actor
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.graph import source_config_dir
from process_helpers import ProcessGroup

N_JOINTS = 7
OBS_DIM, ACT_DIM = 2 * N_JOINTS + 1, N_JOINTS + 1  # joints, velocities, gripper / velocities, gripper
GOAL = np.array([0.3, 0.3, 0.3, 0.3, 0.0, 0.0, 0.0])  # config/arm.yaml's reward_kwargs
MAX_VELOCITY = 0.2  # config/arm.yaml


def test_finetuning_graph_runs_through_the_arm_bridge(tmp_path):
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, (64, 64), -np.ones(ACT_DIM), np.ones(ACT_DIM))
    save_actor(tmp_path / "actor", actor)
    arm_config = source_config_dir() / "arm.yaml"
    steps, presample, episode_steps = 120, 60, 40
    group = ProcessGroup()
    observer = Harness()
    group.start([sys.executable, "-m", "porl_ros.nodes.sim_hardware", "--ros-args", "--params-file", str(arm_config)],
                log_path=tmp_path / "sim_hardware.log", env={"OMP_NUM_THREADS": "1"})
    cmd = [sys.executable, "-m", "porl_ros.cli", "run", "--bridge", "arm", "--timing-mode", "free_running",
           "--checkpoint", str(tmp_path / "actor"), "--eval-episodes", "0", "--episode-steps", str(episode_steps),
           "--steps", str(steps), "--presample-steps", str(presample), "--run-dir", str(tmp_path / "run"),
           "--domain-id", os.environ["ROS_DOMAIN_ID"], "--arm-config", str(arm_config),
           "--param", "arm_bridge:min_transition_subscribers:=2"]
    for item in ("learner:n_critics:=2", "learner:critic_hidden:=[64, 64]", "learner:batch_size:=32",
                 "learner:learning_starts:=32", "learner:weights_every_env_steps:=5", "learner:utd_ratio:=2",
                 "learner:checkpoint_every_env_steps:=0"):
        cmd += ["--param", item]
    try:
        started = time.monotonic()
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, start_new_session=True)
        elapsed = time.monotonic() - started
        time.sleep(0.3)
    finally:
        observer.close()
        group.close()
    logs = "".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((tmp_path / "run" / "logs").glob("*")))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs
    summary = json.loads((tmp_path / "run" / "learner" / "learner_summary.json").read_text())
    assert summary["env_steps"] == steps and summary["seq_gaps"] == 0
    assert summary["gradient_updates"] > 0
    transitions = observer.transitions
    seqs = [t.seq for t in transitions]
    assert seqs[:steps] == list(range(steps)) and seqs == list(range(len(seqs)))
    # Episodes end by time limit after episode_steps steps, then the arm is driven home.
    ends = [t for t in transitions if t.truncated or t.terminated]
    assert ends and all(t.step == episode_steps - 1 for t in ends if t.truncated)
    firsts = [t for t in transitions if t.step == 0 and t.episode > 0]
    assert firsts and all(np.max(np.abs(np.asarray(t.state)[:N_JOINTS])) <= 0.02 + 1e-6 for t in firsts)
    # Rewards come from the configured function on the recorded next state.
    for t in transitions[:50]:
        expected = -np.linalg.norm(np.asarray(t.next_state)[:N_JOINTS] - GOAL)
        assert abs(t.reward - expected) < 1e-4
    # Pre-sample: the frozen actor (version 0); fine-tune: newer versions arrive.
    assert {t.policy_version for t in transitions if t.seq < presample} == {0}
    assert max(t.policy_version for t in transitions) > 0
    # Every driver command inside the configured limits.
    commands = np.array([c for _, c in observer.commands])
    assert commands.shape[1] == N_JOINTS and np.all(np.abs(commands) <= MAX_VELOCITY + 1e-9)
    print(f"arm e2e: {steps} steps in {elapsed:.1f} s, {summary['gradient_updates']} updates")
