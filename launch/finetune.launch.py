"""Fine-tune a pre-trained policy with PORL on a ROS 2 install:

    ros2 launch porl_ros finetune.launch.py checkpoint:=/path/to/actor_dir \
        [profile:=cpu|gpu] [env:=metaworld/push-v3] [timing_mode:=lockstep] [num_bridges:=1] \
        [role:=all|learner|robot] [bridge:=sim|arm] [arm_config:=my_arm.yaml] [run_dir:=runs/latest] [rviz:=false]
        [record:=true|false bag_dir:=runs/latest_bag] [foxglove:=8765 foxglove_host:=127.0.0.1]

The arguments, nodes, names, namespaces, parameter files and the parameters each argument
sets come from porl_ros.graph, the same description `porl-ros run` uses, so the two cannot
drift apart.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from porl_ros import graph

LAUNCH_ONLY = {"rviz": ("false", "Start rviz2 with config/porl.rviz.")}
ARGUMENTS = {**{arg.name: (arg.default_text, arg.help) for arg in graph.RUN_ARGUMENTS}, **LAUNCH_ONLY}


def _nodes(context):
    config_dir = os.path.join(get_package_share_directory(graph.PACKAGE), "config")
    value = {arg.name: arg.parse(LaunchConfiguration(arg.name).perform(context)) for arg in graph.RUN_ARGUMENTS}
    per_node = graph.run_parameters(value)
    actions = []
    nodes = graph.finetune_graph(value["num_bridges"], value["bridge"], value["record"], value["foxglove"])
    for spec in graph.nodes_for_role(nodes, value["role"], value["bridge_ids"]):
        files = graph.node_config_files(spec.name, value["profile"], config_dir, value["arm_config"])
        actions.append(Node(
            package=graph.PACKAGE, executable=spec.executable, name=spec.name,
            namespace=spec.namespace or None,
            # The arm bridge's e-stop latch lives beside the learner's state (the run dir).
            parameters=files + [graph.node_parameters(spec, graph.with_run_files(
                spec, per_node[spec.name], value["run_dir"] or graph.DEFAULT_RUN_DIR))], output="screen",
            # Small inference processes keep to one thread; the cores are the learner's.
            additional_env={} if spec.name == graph.LEARNER else {"OMP_NUM_THREADS": "1"},
        ))
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2",
                arguments=["-d", os.path.join(get_package_share_directory(graph.PACKAGE), "config", "porl.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes)] + [rviz])
