"""`porl-ros experiment`: a tiny grid writes its CSV, curves and table; the variants really differ."""

import csv
import os

import numpy as np
import pytest
import torch

from porl_ros.cli import main as cli_main
from porl_ros.core.phases import FINETUNE, PRESAMPLE
from porl_ros.tools import experiment
from porl_ros.tools.experiment.settings import Experiment
from porl_ros.tools.experiment.single_run import COLUMNS, pretrained_actor, run_single

TASK = "metaworld/reach-v3"
TINY = dict(tasks=[TASK], seeds=[0], total_steps=160, presample_steps=80, max_episode_steps=40,
            eval_every=80, eval_episodes=2, n_critics=2, critic_hidden=[32, 32], batch_size=32, utd_ratio=1,
            demos=2, bc_steps=30, actor_hidden=[32, 32], adaptive_min=40, adaptive_max=120, adaptive_check_every=20,
            adaptive_window=1, adaptive_patience=1, expert_noise=0.0, suboptimal_prob=0.0)


@pytest.fixture(scope="module")
def bc_dir(tmp_path_factory):
    """One BC actor shared by every test here (the cache the grid uses)."""
    d = tmp_path_factory.mktemp("bc")
    pretrained_actor(Experiment.build(TINY), TASK, 0, str(d))
    return str(d)


def test_cli_tiny_grid_writes_csv_png_table(tmp_path, bc_dir):
    out = tmp_path / "grid"
    os.makedirs(out)
    os.symlink(bc_dir, out / "bc")  # reuse the cached BC policy
    args = ["experiment", "--out", str(out), "--tasks", TASK, "--seeds", "0", "--variants", "porl", "t0"]
    for k, v in TINY.items():
        if k not in ("tasks", "seeds"):
            args += ["--" + k.replace("_", "-"), *(str(x) for x in (v if isinstance(v, list) else [v]))]
    assert cli_main(args) == 0
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    # evaluations at 0, 80, 160 for each of the 2 variants
    assert [(r["variant"], int(r["env_steps"])) for r in rows] == [
        ("porl", 0), ("porl", 80), ("porl", 160), ("t0", 0), ("t0", 80), ("t0", 160)]
    assert {r["task"] for r in rows} == {TASK} and {r["seed"] for r in rows} == {"0"}
    for r in rows:
        assert 0.0 <= float(r["success_rate"]) <= 1.0
    # both start from the same cached BC actor, evaluated on the same seeds
    assert rows[0]["mean_return"] == rows[3]["mean_return"]
    porl = {int(r["env_steps"]): r for r in rows if r["variant"] == "porl"}
    assert porl[0]["phase"] == PRESAMPLE and porl[160]["phase"] == FINETUNE
    # the switch happens on the T-th transition, so at most that step's updates touched the actor
    assert int(porl[80]["actor_updates"]) <= TINY["utd_ratio"] and int(porl[160]["actor_updates"]) >= 80
    assert {int(r["presample_steps"]) for r in rows if r["variant"] == "t0"} == {0}
    png = out / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 1_000_000
    table = (out / "table.md").read_text()
    assert f"| {TASK} | porl | 1 |" in table and f"| {TASK} | t0 | 1 |" in table
    # a restart skips the finished runs and only re-renders
    mtime = os.path.getmtime(out / "runs" / "porl__metaworld_reach-v3__s0.csv")
    assert cli_main(args) == 0
    assert os.path.getmtime(out / "runs" / "porl__metaworld_reach-v3__s0.csv") == mtime


class Recorder:
    def __init__(self):
        self.phases, self.explored, self.actor_sums = [], [], []

    def __call__(self, learner, executed, explored):
        self.phases.append(learner.phase)
        self.explored.append(explored)
        with torch.no_grad():
            self.actor_sums.append(float(sum(p.double().sum() for p in learner.agent.actor.parameters())))


def record(variant, bc_dir, **overrides):
    rec = Recorder()
    settings = Experiment.build({**TINY, "total_steps": 120, "eval_every": 1000, **overrides})
    rows = run_single(settings, variant, TASK, 0, bc_dir, observer=rec)
    return rec, rows


def test_variants_differ(bc_dir):
    porl, _ = record("porl", bc_dir)
    t0, _ = record("t0", bc_dir)
    eps0, _ = record("eps0", bc_dir)
    scratch, _ = record("scratch", bc_dir)
    start = TINY["batch_size"]  # updates begin once replay holds one batch
    # PORL: actor frozen bit for bit during pre-sample, trained after the switch.
    # (the observer runs after train(): on the T-th step the switch and its updates are done)
    assert porl.phases[:79] == [PRESAMPLE] * 79 and porl.phases[79:] == [FINETUNE] * 41
    assert len(set(porl.actor_sums[:79])) == 1
    assert porl.actor_sums[-1] != porl.actor_sums[78]
    assert any(porl.explored[:80]) and not any(porl.explored[80:])  # epsilon 0.3, then 0
    # T = 0: fine-tune from the start; the actor changes with the first update.
    assert set(t0.phases) == {FINETUNE}
    assert t0.actor_sums[start - 1] != t0.actor_sums[start - 2]
    assert t0.actor_sums[0] == porl.actor_sums[0]  # same BC actor at the start
    # epsilon = 0: never explores.
    assert not any(eps0.explored) and eps0.phases[:79] == [PRESAMPLE] * 79
    # scratch: a different (random) actor, fine-tuned from step 1.
    assert scratch.actor_sums[0] != porl.actor_sums[0] and set(scratch.phases) == {FINETUNE}


def test_adaptive_switches_early_on_a_flat_critic(bc_dir):
    rec, rows = record("adaptive", bc_dir, adaptive_rel_tol=10.0)  # any change counts as flat
    switch = rec.phases.index(FINETUNE) + 1  # env steps when the switch happened
    # checks every 20 steps; updates (and so signals) start at step 32: values at 40 and 60,
    # the second is the first comparable pair, flat, and past the minimum of 40
    assert switch == 60
    assert rows[-1]["presample_steps"] == switch
    capped, rows = record("adaptive", bc_dir, adaptive_rel_tol=1e-9)  # never flat: the cap ends it
    assert capped.phases.index(FINETUNE) + 1 == TINY["adaptive_max"]
    assert rows[-1]["presample_steps"] == TINY["adaptive_max"]


def test_bad_settings_name_the_field(tmp_path, capsys):
    assert experiment.main(["--out", str(tmp_path), "--variants", "nope"]) == 2
    assert "variants" in capsys.readouterr().err
    assert experiment.main(["--out", str(tmp_path), "--presample-steps", "99", "--total-steps", "10"]) == 2
    assert "presample_steps" in capsys.readouterr().err


def test_remedy_variants_turn_off_what_they_name():
    from porl_ros.tools.experiment.settings import REMEDIES_OFF, VARIANTS, Experiment

    experiment = Experiment.build({})
    porl, _ = experiment.run_config(VARIANTS["porl"], seed=3)
    paper, _ = experiment.run_config(VARIANTS["paper"], seed=3)
    assert porl.seed == paper.seed == 3
    for off in REMEDIES_OFF.values():
        for field, value in off:
            assert getattr(paper, field) == value
    no_mc, _ = experiment.run_config(VARIANTS["no_mc"], seed=0)
    changed = {k for k, v in no_mc.to_dict().items() if v != porl.to_dict()[k] and k != "seed"}
    assert changed <= {"mc_lower_bound"} and no_mc.mc_lower_bound is False
