"""A state the policy server refuses (far outside what the policy was trained on) must not hang
a simulated run: after `abandon_after_resends` re-sends the sim bridge gives the episode up,
resets, and the run goes on to its end. (A real arm's bridge keeps waiting for its operator.)"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import torch

from graph_helpers import ACT_DIM, OBS_DIM, SMALL_LEARNER, run_command
from porl_ros.core.checkpoint import save_actor
from porl_ros.core.networks import SquashedGaussianActor

STEPS, PRESAMPLE, EPISODE = 60, 30, 40
HAND_X = 0.005  # reach-v3 resets the hand here; it moves off by centimetres within a few steps


def test_a_refused_state_ends_the_simulated_episode_instead_of_hanging_the_run(tmp_path):
    # An actor that "never saw" the hand's x move: std 1e-4, so 1 cm off the start is 100 deviations.
    mean, std = np.zeros(OBS_DIM, np.float32), np.ones(OBS_DIM, np.float32)
    mean[0], std[0] = HAND_X, 1e-4
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, (32, 32), -np.ones(ACT_DIM), np.ones(ACT_DIM),
                                  obs_mean=mean, obs_std=std)
    save_actor(tmp_path / "actor", actor)
    run_dir = tmp_path / "run"
    cmd = run_command(str(tmp_path / "actor"), run_dir, "--episode-steps", str(EPISODE), "--steps", str(STEPS),
                      "--presample-steps", str(PRESAMPLE), "--no-record",
                      params=SMALL_LEARNER + ["sim_bridge:action_timeout_s:=0.2",
                                              "sim_bridge:abandon_after_resends:=1",
                                              "policy_server:max_normalised_state:=100.0"])  # a real arm's bound
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, start_new_session=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bridge_log = (run_dir / "logs" / "sim_bridge.log").read_text()
    assert "abandoning the episode" in bridge_log
    assert "training standard deviations" in (run_dir / "logs" / "policy_server.log").read_text()
    summary = json.loads((run_dir / "learner" / "learner_summary.json").read_text())
    assert summary["env_steps"] == STEPS  # every step the run asked for, despite the refusals
