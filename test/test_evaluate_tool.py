"""evaluate tool: the library function, the CLI's JSON output and its errors."""

import json

import numpy as np
import pytest

from porl_ros.core.checkpoint import PolicyMeta, save_actor
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.envs.registry import make_env
from porl_ros.tools import evaluate
from porl_ros.tools.evaluate import EvalResult, evaluate_policy, expert_policy, random_policy


def make_checkpoint(path, obs_dim=39, act_dim=4, env_id="metaworld/reach-v3"):
    actor = SquashedGaussianActor(obs_dim, act_dim, (32, 32), -np.ones(act_dim), np.ones(act_dim))
    save_actor(path, actor, PolicyMeta.for_actor(actor, env_id=env_id))
    return path


def test_evaluate_policy_expert_vs_random():
    env = make_env("metaworld/reach-v3", max_episode_steps=60)
    try:
        ex = evaluate_policy(env, expert_policy(env), episodes=3, seed=5)
        rnd = evaluate_policy(env, random_policy(env, seed=0), episodes=3, seed=5)
    finally:
        env.close()
    assert isinstance(ex, EvalResult) and len(ex.per_episode) == 3
    assert [e.seed for e in ex.per_episode] == [5, 6, 7]
    assert ex.success_rate == 1.0 and ex.mean_length < 60
    assert rnd.success_rate == 0.0 and rnd.mean_length == 60
    assert ex.mean_return > rnd.mean_return
    assert ex.std_return == pytest.approx(np.std([e.ret for e in ex.per_episode]))
    d = ex.to_dict()
    assert d["episodes"] == 3 and len(d["per_episode"]) == 3
    with pytest.raises(ValueError, match="episodes"):
        evaluate_policy(env, expert_policy(env), episodes=0)


def test_cli_writes_json(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "res" / "eval.json"
    rc = evaluate.main([str(ckpt), "--episodes", "2", "--seed", "3", "--max-episode-steps",
                        "20", "--json", str(out), "--quiet"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["env_id"] == "metaworld/reach-v3"  # taken from the checkpoint
    assert data["episodes"] == 2 and data["deterministic"] is True
    assert [e["seed"] for e in data["per_episode"]] == [3, 4]
    assert all(e["length"] == 20 for e in data["per_episode"])
    assert "success" in capsys.readouterr().out
    # stochastic mode is seeded: same result twice
    rets = []
    for _ in range(2):
        assert evaluate.main([str(ckpt), "--env", "metaworld/reach-v3", "--episodes", "1",
                              "--stochastic", "--max-episode-steps", "10", "--json", str(out),
                              "--quiet"]) == 0
        rets.append(json.loads(out.read_text())["mean_return"])
    assert rets[0] == rets[1]


def test_cli_bad_checkpoint_path(tmp_path, capsys):
    rc = evaluate.main([str(tmp_path / "nope"), "--env", "metaworld/reach-v3", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "does not exist" in err and "Traceback" not in err


def test_cli_corrupt_checkpoint(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    (ckpt / "actor.safetensors").write_bytes(b"garbage")
    rc = evaluate.main([str(ckpt), "--env", "metaworld/reach-v3", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "safetensors" in err


def test_cli_mismatched_observation_size(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ckpt", obs_dim=10)
    rc = evaluate.main([str(ckpt), "--env", "metaworld/reach-v3", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "obs_dim mismatch" in err and "10" in err and "39" in err
    assert "Traceback" not in err


def test_cli_bad_env_id(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    rc = evaluate.main([str(ckpt), "--env", "metaworld/psh-v3", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown Meta-World task 'psh-v3'" in err


def test_parser_defaults():
    args = evaluate.build_parser().parse_args(["ckpt"])
    assert args.deterministic is True and args.episodes >= 1 and args.json_path is None
    assert evaluate.build_parser().parse_args(["ckpt", "--stochastic"]).deterministic is False
