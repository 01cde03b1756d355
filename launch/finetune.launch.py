"""Fine-tune a pre-trained policy with PORL on a ROS 2 install:

    ros2 launch porl_ros finetune.launch.py checkpoint:=/path/to/actor_dir \
        [profile:=cpu|gpu] [env_id:=metaworld/push-v3] [timing_mode:=lockstep] \
        [num_bridges:=1] [role:=all|learner|robot] [bridge:=sim|arm] [arm_config:=my_arm.yaml] [run_dir:=runs/latest] [rviz:=false]

The nodes, names, namespaces and parameter files come from porl_ros.graph, the same
description `porl-ros run` uses, so the two cannot drift apart.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from porl_ros import graph

ARGUMENTS = {
    "checkpoint": ("", "Pre-trained actor directory (actor.safetensors + meta.json)."),
    "profile": ("cpu", "Learner sizing: cpu or gpu."),
    "env_id": ("metaworld/push-v3", "Environment of the sim bridge."),
    "timing_mode": ("lockstep", "lockstep (simulators) or free_running (real robots)."),
    "num_bridges": ("1", "Bridges feeding the one learner."),
    "bridge": ("sim", "sim (embedded simulator / RLBench) or arm (a real arm's ROS 2 drivers)."),
    "arm_config": ("", "Parameter file of the arm bridge (default: the package's config/arm.yaml)."),
    "run_dir": ("runs/latest", "Learner output directory."),
    "seed": ("0", "Seed of the run (each bridge's nodes get seed + bridge_id * 100000)."),
    "role": ("all", "Which nodes this machine runs: all, learner, or robot (bridges + controllers + policy servers)."),
    "bridge_ids": ("", "With role:=robot: only these bridges, e.g. '0,1' (default: all)."),
    "rviz": ("false", "Start rviz2 with config/porl.rviz."),
}


def _nodes(context):
    share = get_package_share_directory(graph.PACKAGE)
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    files = [os.path.join(share, "config", name) for name in graph.config_files(value["profile"])]
    seed = int(value["seed"])
    per_node = {
        "learner": {"run_dir": value["run_dir"], "timing_mode": value["timing_mode"], "env_id": value["env_id"],
                    "seed": seed},
        "sim_bridge": {"env_id": value["env_id"], "timing_mode": value["timing_mode"], "seed": seed},
        "arm_bridge": {"timing_mode": value["timing_mode"]},
        "exploration_controller": {"seed": seed},
        "policy_server": {"seed": seed},
    }
    arm_config = value["arm_config"] or os.path.join(share, "config", graph.BRIDGE_CONFIGS["arm"])
    actions = []
    nodes = graph.finetune_graph(int(value["num_bridges"]), value["bridge"])
    for spec in graph.nodes_for_role(nodes, value["role"], value["bridge_ids"]):
        overrides = graph.node_parameters(spec, {"checkpoint": value["checkpoint"], **per_node[spec.name]})
        node_files = files + ([arm_config] if spec.name == "arm_bridge" else [])
        actions.append(Node(
            package=graph.PACKAGE, executable=spec.executable, name=spec.name,
            namespace=spec.namespace or None, parameters=node_files + [overrides], output="screen",
            # Small inference processes keep to one thread; the cores are the learner's.
            additional_env={} if spec.name == "learner" else {"OMP_NUM_THREADS": "1"},
        ))
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2",
                arguments=["-d", os.path.join(get_package_share_directory(graph.PACKAGE), "config", "porl.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(declared + [OpaqueFunction(function=_nodes), rviz])
