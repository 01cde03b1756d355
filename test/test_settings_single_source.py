"""Every setting has one home (its settings class); everything else is derived from it, and
these tests fail when something restates or contradicts it: parameter files, the generated
docs page, the launch file's and the runner's arguments, the nodes' ROS parameters and the
experiment's options."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from rclpy.parameter import Parameter

from launch_helpers import run_launch_file
from porl_ros import graph, runner
from porl_ros.core.checkpoint import save_actor
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.core.settings import NONE_TEXT, SettingError, field_names, fields_of
from porl_ros.nodes.settings import NODE_SETTINGS, file_sections
from porl_ros.tools import parameter_docs
from porl_ros.tools.experiment import cli as experiment_cli
from porl_ros.tools.experiment.settings import EXPERIMENT_CLASSES, PER_RUN, Experiment

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted((ROOT / "config").glob("*.yaml"))


def _fields(node: str) -> dict:
    return {info.name: info for cls in NODE_SETTINGS[node] for info in fields_of(cls)}


def test_every_node_has_settings_and_its_fields_are_unique():
    assert set(NODE_SETTINGS) == set(graph.NODE_CLASSES)
    for node, classes in NODE_SETTINGS.items():
        names = field_names(*classes)
        assert len(names) == len(set(names)), f"{node}: a field is declared in two of its classes"
        module, class_name = graph.NODE_CLASSES[node]
        assert isinstance(getattr(importlib.import_module(module), class_name), type)
    names = field_names(*EXPERIMENT_CLASSES.values())
    assert len(names) == len(set(names)), "two experiment classes share a field name"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_parameter_files_hold_only_valid_overrides(path):
    sections = file_sections(path)
    assert sections, f"{path.name} sets nothing: delete it"
    for node, values in sections.items():
        assert node in NODE_SETTINGS, f"{path.name}: section for unknown node '{node}'"
        known = _fields(node)
        for name, value in values.items():
            assert name in known, f"{path.name}: {node} has no parameter '{name}'"
            coerced = known[name].coerce(value)
            assert coerced != known[name].default, (f"{path.name}: {node}.{name} = {value!r} restates the default "
                                                    f"of its settings class; remove it")
    referenced = {name for profile in graph.PROFILE_CONFIGS for name in graph.config_files(profile)}
    referenced |= {name for name in graph.BRIDGE_CONFIGS.values() if name}
    assert path.name in referenced, f"{path.name} is not used by any profile or bridge"


def test_parameter_docs_page_is_generated_from_the_classes():
    page = parameter_docs.PAGE.read_text()
    assert page == parameter_docs.render(), "docs/parameters.md is out of date: run " \
                                            "`python -m porl_ros.tools.parameter_docs`"
    for node, classes in NODE_SETTINGS.items():
        for name in field_names(*classes):
            assert f"| `{name}` |" in page, f"{node}.{name} missing from docs/parameters.md"


# ---------------------------------------------------------------- launch file and runner
def test_launch_and_runner_arguments_are_the_graphs(monkeypatch):
    declared, _ = run_launch_file(monkeypatch)
    assert declared == {**{arg.name: arg.default_text for arg in graph.RUN_ARGUMENTS}, "rviz": "false"}
    options = {a.dest: a for a in runner.build_parser()._actions}
    for arg in graph.RUN_ARGUMENTS:
        for target in arg.sets:
            node, parameter = target.split(".")
            assert parameter in _fields(node), f"run argument {arg.name} sets unknown {target}"
        if arg.runner_option:
            assert arg.name in options, f"porl-ros run has no --{arg.name.replace('_', '-')}"
            assert options[arg.name].default == arg.default and options[arg.name].type in (arg.type, None)
    assert "run_dir" in options  # the runner's own (the run's root), not the graph's


def test_launch_and_runner_start_each_node_with_the_same_overrides(monkeypatch, tmp_path):
    given = {"checkpoint": "/ckpt", "env": "metaworld/reach-v3", "seed": "3", "episode_steps": "50", "steps": "900",
             "num_bridges": "2", "timing_mode": "free_running", "bridge": "arm", "run_dir": str(tmp_path / "learner")}
    _, launched = run_launch_file(monkeypatch, **given)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in given.items() if k != "run_dir"]
    args = runner.build_parser().parse_args(argv + ["--run-dir", str(tmp_path)])
    params = runner.node_parameters(args, "/ckpt", tmp_path)
    specs = graph.finetune_graph(2, "arm")
    assert [n.kwargs["name"] for n in launched] == [s.name for s in specs]
    for node, spec in zip(launched, specs):
        files, overrides = node.kwargs["parameters"][:-1], node.kwargs["parameters"][-1]
        # Run files (the arm bridge's e-stop latch) go under each one's run dir: the launch file's
        # run_dir is the learner's output directory, porl-ros run's the run's root.
        expected = graph.with_run_files(spec, params[spec.name], given["run_dir"])
        assert overrides == graph.node_parameters(spec, expected), spec.name
        assert [Path(f).name for f in files] == [Path(f).name for f in graph.node_config_files(
            spec.name, "cpu", graph.source_config_dir())]
    assert params["learner"]["total_env_steps"] == 900 and params["arm_bridge"]["max_episode_steps"] == 50


def test_runner_refuses_unknown_parameters_before_starting(tmp_path):
    args = runner.build_parser().parse_args(["--param", "learner:utd_ratoi:=4"])
    with pytest.raises(SystemExit, match="utd_ratoi"):
        runner.node_parameters(args, "", tmp_path)
    args = runner.build_parser().parse_args(["--param", "learner:utd_ratio:=0"])
    with pytest.raises(SystemExit, match="utd_ratio"):
        runner.node_parameters(args, "", tmp_path)


# ---------------------------------------------------------------- the nodes' ROS parameters
def test_learner_declares_every_field_with_its_description_and_optional_convention(tmp_path):
    from porl_ros.nodes.learner import LearnerNode
    from porl_ros.nodes.params import ParameterError

    torch.manual_seed(0)
    actor = SquashedGaussianActor(39, 4, (32, 32), -np.ones(4), np.ones(4))
    save_actor(tmp_path / "actor", actor)
    context = rclpy.Context()
    rclpy.init(context=context)
    base = [Parameter("checkpoint", value=str(tmp_path / "actor")), Parameter("tensorboard", value=False),
            Parameter("n_critics", value=2), Parameter("critic_hidden", value=[16, 16])]
    try:
        for i, (extra, expected) in enumerate((([], None), ([Parameter("presample_utd_ratio", value=4)], 4),
                                               ([Parameter("presample_utd_ratio", value=NONE_TEXT)], None))):
            node = LearnerNode(context=context, parameter_overrides=base + extra + [
                Parameter("run_dir", value=str(tmp_path / f"run{i}"))])
            try:
                assert node.learner.config.presample_utd_ratio == expected
                declared = {name: node.describe_parameter(name) for name in node._parameters}
                for info in fields_of(NODE_SETTINGS["learner"][0]) + fields_of(NODE_SETTINGS["learner"][1]):
                    assert info.name in declared, info.name
                    assert declared[info.name].description.startswith(info.doc)
                    assert declared[info.name].dynamic_typing == info.optional
            finally:
                node.close()
                node.destroy_node()
        with pytest.raises(ParameterError, match="init_alpha"):
            LearnerNode(context=context, parameter_overrides=base + [Parameter("init_alpha", value=-1.0),
                                                                    Parameter("run_dir", value=str(tmp_path / "x"))])
    finally:
        context.try_shutdown()


# ---------------------------------------------------------------- the experiment
def test_experiment_options_are_the_settings_fields_with_the_profiles_defaults():
    parser = experiment_cli.build_parser("cpu")
    options = {a.dest: a for a in parser._actions if a.dest not in ("help", "out", "jobs", "render_only")}
    expected = set(field_names(*EXPERIMENT_CLASSES.values())) - set(PER_RUN)
    assert set(options) == expected
    defaults = Experiment.build({})
    assert defaults.learner.n_critics == options["n_critics"].default == 4  # config/profile_cpu.yaml
    assert defaults.grid.total_steps == 8000 and defaults.learner.presample_utd_ratio == 4
    gpu = Experiment.build({"profile": "gpu"})
    assert gpu.learner.n_critics == 10 and gpu.learner.reward_scale == 0.1  # the class defaults
    with pytest.raises(SettingError, match="profile"):
        Experiment.build({"profile": "tpu"})
    with pytest.raises(SettingError, match="bogus"):
        Experiment.build({"bogus": 1})


def test_a_new_porl_config_field_appears_everywhere(monkeypatch):
    """Adding a PorlConfig field is one line: the learner's parameters, the experiment's options
    and the docs table all follow (here with a field added on the fly)."""
    from porl_ros.core import config as config_module
    from porl_ros.core.settings import POSITIVE, setting

    @dataclasses.dataclass
    class Extended(config_module.PorlConfig):
        trust_region: float = setting(0.5, "Weight of a pull toward the pre-trained actor.", POSITIVE)

    monkeypatch.setitem(NODE_SETTINGS, "learner", (Extended, NODE_SETTINGS["learner"][1]))
    monkeypatch.setitem(EXPERIMENT_CLASSES, "learner", Extended)
    assert "| `trust_region` | `0.5` |" in parameter_docs.render()
    parser = experiment_cli.build_parser("cpu")
    assert parser.parse_args(["--trust-region", "0.2"]).trust_region == 0.2
    assert "trust_region" in field_names(*NODE_SETTINGS["learner"])


# ---------------------------------------------------------------- documentation links
def _slug(heading: str) -> str:
    import re
    return re.sub(r"[^a-z0-9_\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short_and_no_doc_link_dangles():
    import re

    assert len((ROOT / "README.md").read_text().splitlines()) < 150
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.name} links to missing {target}"
            if anchor:
                headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)}
                assert anchor in headings, f"{page.name} links to missing heading {target}#{anchor}"
    # Pages named in code and configuration exist too.
    sources = [*ROOT.joinpath("porl_ros").rglob("*.py"), *ROOT.joinpath("config").glob("*"),
               *ROOT.joinpath("scripts").glob("*"), ROOT / "launch" / "finetune.launch.py"]
    for source in sources:
        for name in re.findall(r"docs/([\w.-]+\.md)", source.read_text(errors="replace")):
            assert (ROOT / "docs" / name).is_file(), f"{source.name} refers to missing docs/{name}"
