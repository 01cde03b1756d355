"""The graph description against what it names, and the launch file built from it (run
against a recording stand-in of the launch API: launch_helpers). What is checked is what
could break for a user: every node points at an installed entry point, every parameter file
exists and parses, names match the files' sections.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from launch_helpers import run_launch_file
from porl_ros import graph
from porl_ros.core.settings import fields_of

ROOT = Path(__file__).resolve().parents[1]


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [elt.value for elt in value.elts]
                    return {e.split("=")[0].strip(): e.split("=")[1].strip() for e in entries}
    raise AssertionError("setup.py has no console_scripts")


def test_every_node_has_an_entry_point_and_a_main():
    scripts = _console_scripts()
    for spec in graph.finetune_graph(2):
        assert spec.executable in scripts, f"{spec.executable} is not a console script in setup.py"
        assert scripts[spec.executable] == f"{spec.module}:main"
        module = importlib.import_module(spec.module)
        assert callable(module.main)


@pytest.mark.parametrize("profile", sorted(graph.PROFILE_CONFIGS))
def test_parameter_files_exist_and_name_only_graph_nodes(profile):
    names = {spec.name for spec in graph.finetune_graph(1)}
    for file_name in graph.config_files(profile):
        data = yaml.safe_load((ROOT / "config" / file_name).read_text())
        for key, section in data.items():
            assert key.startswith("/**/") and key[4:] in names, f"{file_name}: section {key} matches no node"
            assert set(section) == {"ros__parameters"}


def test_parameter_files_only_set_declared_parameters():
    from porl_ros.nodes.settings import NODE_SETTINGS

    for file_name in {f for p in graph.PROFILE_CONFIGS for f in graph.config_files(p)}:
        for key, section in yaml.safe_load((ROOT / "config" / file_name).read_text()).items():
            node = key[4:]
            known = {info.name: info for cls in NODE_SETTINGS[node] for info in fields_of(cls)}
            for name, value in section["ros__parameters"].items():
                assert name in known, f"{file_name}: {node} has no parameter '{name}'"
                known[name].coerce(value)  # the file's value passes the node's own check


def test_graph_namespaces_bridges_and_rejects_bad_counts():
    nodes = graph.finetune_graph(3)
    assert [n.name for n in nodes].count("learner") == 1
    bridges = [n for n in nodes if n.name == "sim_bridge"]
    assert [b.namespace for b in bridges] == ["bridge_0", "bridge_1", "bridge_2"]
    assert [b.parameters["bridge_id"] for b in bridges] == [0, 1, 2]
    with pytest.raises(ValueError, match="num_bridges"):
        graph.finetune_graph(0)
    with pytest.raises(ValueError, match="unknown profile"):
        graph.config_files("tpu")


# ---------------------------------------------------------------- launch file
def _launch(monkeypatch, **arguments):
    return run_launch_file(monkeypatch, **arguments)[1]


def test_launch_file_starts_the_graph_description(monkeypatch):
    nodes = _launch(monkeypatch, checkpoint="/ckpt", num_bridges="2", profile="gpu")
    expected = graph.finetune_graph(2)
    assert [(n.kwargs["executable"], n.kwargs["namespace"]) for n in nodes] == \
        [(s.executable, s.namespace or None) for s in expected]
    for node, spec in zip(nodes, expected):
        assert node.kwargs["package"] == "porl_ros" and node.kwargs["name"] == spec.name
        files, overrides = node.kwargs["parameters"][:-1], node.kwargs["parameters"][-1]
        assert [Path(f).name for f in files] == graph.config_files("gpu")
        assert all(Path(f).is_file() for f in files)
        if spec.name != graph.RECORDER:  # the recorder needs no actor
            assert overrides["checkpoint"] == "/ckpt"
        for key, value in spec.parameters.items():
            assert overrides[key] == value
    # Each bridge's nodes get their own seed, as `porl-ros run` gives them.
    seeds = [n.kwargs["parameters"][-1]["seed"] for n in nodes if n.kwargs["name"] == "sim_bridge"]
    assert seeds == [graph.node_parameters(s, {"seed": 0})["seed"] for s in expected if s.name == "sim_bridge"]
    assert len(set(seeds)) == 2


def test_launch_file_refuses_unknown_profile(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile"):
        _launch(monkeypatch, profile="fast")


def test_launch_file_swaps_in_the_arm_bridge(monkeypatch):
    nodes = _launch(monkeypatch, checkpoint="/ckpt", bridge="arm", timing_mode="free_running")
    arm = [n for n in nodes if n.kwargs["name"] == "arm_bridge"]
    assert len(arm) == 1 and not [n for n in nodes if n.kwargs["name"] == "sim_bridge"]
    files = arm[0].kwargs["parameters"][:-1]
    assert [Path(f).name for f in files] == graph.config_files("cpu") + ["arm.yaml"]
    assert all(Path(f).is_file() for f in files)
    assert arm[0].kwargs["parameters"][-1]["timing_mode"] == "free_running"


def test_launch_file_starts_one_role_per_machine(monkeypatch):
    learner = _launch(monkeypatch, checkpoint="/ckpt", num_bridges="2", role="learner")
    assert [n.kwargs["name"] for n in learner] == ["learner", "recorder"]  # the bag is kept beside the learner
    robot = _launch(monkeypatch, checkpoint="/ckpt", num_bridges="2", role="robot", bridge_ids="1")
    assert sorted(n.kwargs["name"] for n in robot) == ["exploration_controller", "policy_server", "sim_bridge"]
    assert {n.kwargs["namespace"] for n in robot} == {"bridge_1"}
    with pytest.raises(ValueError, match="unknown role"):
        _launch(monkeypatch, role="both")


def test_launch_file_latches_the_arm_e_stop_in_the_run_dir(monkeypatch, tmp_path):
    """As with porl-ros run, an e-stop engaged under ros2 launch survives a restart of the bridge:
    the latch file lives in the run dir (issue 17 item 9)."""
    nodes = _launch(monkeypatch, checkpoint="/ckpt", bridge="arm", run_dir=str(tmp_path / "run"))
    arm = [n for n in nodes if n.kwargs["name"] == "arm_bridge"]
    assert arm[0].kwargs["parameters"][-1]["emergency_stop_file"] == str(
        tmp_path / "run" / "arm_bridge" / "arm_bridge.emergency_stop")
    default = [n for n in _launch(monkeypatch, checkpoint="/ckpt", bridge="arm") if n.kwargs["name"] == "arm_bridge"]
    assert default[0].kwargs["parameters"][-1]["emergency_stop_file"].startswith(graph.DEFAULT_RUN_DIR + "/")


def test_only_a_real_arm_has_its_policy_server_refuse_states_unlike_its_training_data():
    sim = {spec.name: spec for spec in graph.finetune_graph(1)}[graph.POLICY_SERVER]
    arm = {spec.name: spec for spec in graph.finetune_graph(1, bridge="arm")}[graph.POLICY_SERVER]
    assert sim.defaults["max_normalised_state"] >= 1e6
    assert "max_normalised_state" not in arm.defaults  # the settings' default bound (100 deviations)
