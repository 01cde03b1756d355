"""pretrain on push-v3: the BC policy beats random clearly and stays below the expert,
so fine-tuning has room to improve it. Also the demonstration collector's options."""

import json
import os

import numpy as np
import pytest

from porl_ros.core.checkpoint import load_actor
from porl_ros.envs.registry import make_env
from porl_ros.tools import evaluate, pretrain
from porl_ros.tools.evaluate import evaluate_policy, expert_policy, random_policy
from porl_ros.tools.pretrain import collect_demonstrations

EPISODE_STEPS = 200
EVAL_EPISODES = 20
EVAL_SEED = 1000


def test_pretrain_push_has_headroom(tmp_path, capsys):
    out = tmp_path / "push_bc"
    rc = pretrain.main(["--env", "metaworld/push-v3", "--out", str(out), "--demos", "10",
                        "--expert-noise", "0.3", "--suboptimal-prob", "0.1",
                        "--bc-steps", "500", "--max-episode-steps", str(EPISODE_STEPS),
                        "--eval-episodes", "0", "--quiet"])
    assert rc == 0
    summary = capsys.readouterr().out
    for text in ("demonstrations kept", "expert success rate", "transitions",
                 "BC final loss", str(out)):
        assert text in summary
    actor, meta = load_actor(out, expect={"obs_dim": 39, "act_dim": 4})
    assert meta.env_id == "metaworld/push-v3" and meta.extra["demos"] == 10
    assert meta.obs_normalisation

    result_path = tmp_path / "bc.json"
    assert evaluate.main([str(out), "--episodes", str(EVAL_EPISODES), "--seed", str(EVAL_SEED),
                          "--max-episode-steps", str(EPISODE_STEPS), "--json",
                          str(result_path), "--quiet"]) == 0
    bc = json.loads(result_path.read_text())["success_rate"]

    env = make_env("metaworld/push-v3", max_episode_steps=EPISODE_STEPS)
    try:
        expert = evaluate_policy(env, expert_policy(env), EVAL_EPISODES, EVAL_SEED).success_rate
        rand = evaluate_policy(env, random_policy(env), EVAL_EPISODES, EVAL_SEED).success_rate
    finally:
        env.close()
    print(f"push-v3 success over {EVAL_EPISODES} episodes: expert {expert:.2f}, "
          f"BC {bc:.2f}, random {rand:.2f}")
    assert expert >= 0.95
    assert rand <= 0.05
    assert bc >= rand + 0.25, f"BC policy ({bc}) is not clearly better than random ({rand})"
    assert bc <= expert - 0.15, f"BC policy ({bc}) leaves no headroom below the expert ({expert})"


def test_collect_demonstrations_options():
    env = make_env("metaworld/reach-v3", max_episode_steps=80)
    try:
        clean = collect_demonstrations(env, 2, seed=0)
        assert clean.kept == 2 and clean.attempts == 2 and clean.success_rate == 1.0
        assert clean.observations.shape == (sum(clean.episode_lengths), 39)
        assert clean.observations.dtype == np.float32 and clean.actions.shape[1] == 4
        # The same seed gives the same demonstrations.
        again = collect_demonstrations(env, 2, seed=0)
        np.testing.assert_array_equal(clean.actions, again.actions)
        # Fully random "expert": nothing succeeds; keep=success gives up, keep=all keeps all.
        bad = collect_demonstrations(env, 2, suboptimal_prob=1.0, seed=0, max_attempts=3)
        assert bad.kept == 0 and bad.attempts == 3 and bad.transitions == 0
        allk = collect_demonstrations(env, 2, suboptimal_prob=1.0, keep="all", seed=0)
        assert allk.kept == 2 and allk.transitions == 160 and allk.successes == 0
        noisy = collect_demonstrations(env, 1, expert_noise=0.5, seed=0)
        assert np.all(np.abs(noisy.actions) <= 1.0)
        assert not np.allclose(noisy.actions[:5], clean.actions[:5])
        with pytest.raises(ValueError, match="keep"):
            collect_demonstrations(env, 1, keep="best")
        with pytest.raises(ValueError, match="suboptimal_prob"):
            collect_demonstrations(env, 1, suboptimal_prob=1.5)
    finally:
        env.close()


def test_pretrain_cli_errors(tmp_path, capsys):
    assert pretrain.main(["--env", "metaworld/psh-v3", "--out", str(tmp_path / "x"),
                          "--quiet"]) == 2
    assert "unknown Meta-World task 'psh-v3'" in capsys.readouterr().err
    assert pretrain.main(["--env", "gymnasium/AdroitHandDoor-v1", "--out",
                          str(tmp_path / "x"), "--quiet"]) == 2
    assert "no scripted expert" in capsys.readouterr().err
    assert pretrain.main(["--demos", "0", "--quiet"]) == 2
    assert pretrain.main(["--suboptimal-prob", "2", "--quiet"]) == 2
    assert not os.path.exists(tmp_path / "x")
