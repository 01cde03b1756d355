"""The launch file run against a recording stand-in of the launch API.

`launch` / `launch_ros` cannot be installed here (no ROS 2 distribution), so
launch/finetune.launch.py is executed against stand-ins of the parts it uses
(LaunchDescription, DeclareLaunchArgument, OpaqueFunction, IfCondition,
LaunchConfiguration.perform(context), launch_ros.actions.Node's keyword arguments).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


def _install_launch_stand_in(monkeypatch) -> None:
    modules = {name: types.ModuleType(name) for name in
               ["launch", "launch.actions", "launch.conditions", "launch.substitutions",
                "launch_ros", "launch_ros.actions"]}
    modules["launch"].LaunchDescription = lambda entities: list(entities)
    modules["launch.actions"].DeclareLaunchArgument = Recorder
    modules["launch.actions"].OpaqueFunction = lambda function: types.SimpleNamespace(function=function)
    modules["launch.conditions"].IfCondition = Recorder
    modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    modules["launch_ros.actions"].Node = Recorder
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    import ament_index_python.packages as packages
    monkeypatch.setattr(packages, "get_package_share_directory", lambda package: str(ROOT))


def run_launch_file(monkeypatch, **arguments) -> tuple[dict, list]:
    """(declared argument defaults, the launched Node records) for these launch arguments."""
    _install_launch_stand_in(monkeypatch)
    spec = importlib.util.spec_from_file_location("finetune_launch", ROOT / "launch" / "finetune.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entities = module.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if isinstance(e, Recorder)
                and "default_value" in e.kwargs}
    context = types.SimpleNamespace(launch_configurations={**declared, **arguments})
    opaque = [e for e in entities if hasattr(e, "function")]
    assert len(opaque) == 1
    return declared, list(opaque[0].function(context))
