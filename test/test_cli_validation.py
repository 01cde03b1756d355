"""`porl-ros run` checks every argument before any work starts (no pre-training, no files),
and a start that fails leaves nothing that blocks a retry in the same run dir."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
import torch

from graph_helpers import ACT_DIM, ENV_ID, OBS_DIM, random_actor_checkpoint
from porl_ros.core.checkpoint import save_actor
from porl_ros.core.learner_state import LearnerStateStore
from porl_ros.core.networks import SquashedGaussianActor


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def wrong_checkpoint(tmp_path_factory) -> str:
    """An actor for another environment: 5 observations instead of reach-v3's 39."""
    torch.manual_seed(0)
    actor = SquashedGaussianActor(5, ACT_DIM, (16, 16), -np.ones(ACT_DIM), np.ones(ACT_DIM))
    path = tmp_path_factory.mktemp("wrong") / "actor"
    save_actor(path, actor)
    return str(path)


BAD = [
    (["--steps", "0"], "--steps 0"),
    (["--steps", "-5"], "--steps -5"),
    (["--presample-steps", "-1"], "--presample-steps -1"),
    (["--steps", "100", "--presample-steps", "500"], "--presample-steps 500: must be <= --steps 100"),
    (["--episode-steps", "0"], "--episode-steps 0"),
    (["--eval-every", "-1"], "--eval-every -1"),
    (["--seed", "-3"], "--seed -3"),
    (["--num-bridges", "0"], "--num-bridges 0"),
    (["--eval-episodes", "-1"], "--eval-episodes -1"),
    (["--domain-id", "500"], "--domain-id 500"),
    (["--pretrain-demos", "0"], "--pretrain-demos 0"),
    (["--pretrain-bc-steps", "0"], "--pretrain-bc-steps 0"),
    (["--param", "learner:utd_ratio:=0"], "utd_ratio"),
    (["--param", "learner:no_such:=1"], "no_such"),
    (["--env", "nosuch/env"], "--env nosuch/env"),
    (["--arm-config", "/nonexistent.yaml"], "--arm-config"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_argument_fails_at_once_naming_it_and_creates_nothing(tmp_path, extra, message):
    from porl_ros import runner

    run_dir = tmp_path / "run"
    started = time.monotonic()
    # No --checkpoint: a bad value must fail before the BC pre-training would start.
    with pytest.raises(SystemExit) as info:
        runner.main(["--env", ENV_ID, "--run-dir", str(run_dir), "--eval-episodes", "0", *extra])
    assert message in str(info.value)
    assert time.monotonic() - started < 20
    assert not run_dir.exists(), f"a refused start created {sorted(run_dir.rglob('*'))}"


def test_checkpoint_that_does_not_fit_the_env_is_refused_before_start(tmp_path, wrong_checkpoint):
    from porl_ros import runner

    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"--checkpoint does not fit --env .*obs_dim"):
        runner.main(["--env", ENV_ID, "--run-dir", str(run_dir), "--checkpoint", wrong_checkpoint,
                     "--eval-episodes", "0"])
    assert not run_dir.exists()
    with pytest.raises(SystemExit, match=r"--checkpoint: .*cannot read"):
        runner.main(["--env", ENV_ID, "--run-dir", str(run_dir), "--checkpoint", str(tmp_path / "none"),
                     "--eval-episodes", "0", "--role", "learner", "--domain-id", "1"])


def test_steps_zero_exits_fast_from_the_command_line(tmp_path):
    """The issue's case: `porl-ros run --steps 0` ran forever; now it is a quick non-zero exit."""
    run_dir = tmp_path / "run"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "porl_ros.cli", "run", "--steps", "0", "--run-dir", str(run_dir)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--steps 0: must be >= 1" in result.stderr
    assert time.monotonic() - started < 60
    assert not run_dir.exists()


def test_learner_that_stored_nothing_leaves_a_retryable_run_dir(tmp_path, checkpoint):
    """A start that fails elsewhere (say a bridge refuses its checkpoint) stops the learner before any
    transition: it must leave no state, so the same run dir is accepted again without --resume."""
    from rclpy.parameter import Parameter

    from porl_ros.nodes.learner import LearnerNode

    learner_dir = tmp_path / "run" / "learner"
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        params = [Parameter("checkpoint", value=checkpoint), Parameter("run_dir", value=str(learner_dir)),
                  Parameter("n_critics", value=2), Parameter("critic_hidden", value=[16, 16]),
                  Parameter("tensorboard", value=False)]
        for _ in range(2):  # the second start is the retry: refused before the fix
            node = LearnerNode(context=context, parameter_overrides=params)
            assert node.store.has_state()  # its open log segment
            node.close()
            node.destroy_node()
            assert not LearnerStateStore(learner_dir / "state", OBS_DIM, ACT_DIM).has_state()
    finally:
        context.try_shutdown()


def test_state_with_records_is_never_discarded(tmp_path):
    from porl_ros.core.learner_state import LoggedTransition

    store = LearnerStateStore(tmp_path / "state", 3, 1)
    store.start_segment()
    store.log_transition(LoggedTransition(0, 0, 0, 0, np.zeros(3), np.zeros(1), 0.0, np.zeros(3), False, False, False))
    assert not store.discard_if_empty()
    assert store.has_state()
