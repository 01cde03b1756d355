"""The one description of the fine-tuning graph: which nodes, their executables, names,
namespaces and parameter files. `launch/finetune.launch.py` (for a ROS 2 install) and
`porl-ros run` (this project's own runner) are both built from it, so they cannot
drift apart. No rclpy import here: the launch file and the tests read it as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "porl_ros"
TOPIC_PREFIX = "/porl"

# Parameter files, applied in this order (later ones override earlier ones).
BASE_CONFIG = "finetune.yaml"
PROFILE_CONFIGS = {"cpu": "profile_cpu.yaml", "gpu": "profile_gpu.yaml"}


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph."""

    name: str  # ROS node name; also its section in the parameter files
    executable: str  # console entry point (`ros2 run porl_ros <executable>`)
    module: str  # Python module whose main() runs the node
    namespace: str = ""
    # Parameters set by the graph itself (on top of the parameter files).
    parameters: dict = field(default_factory=dict)


# The bridge kinds: node name (= parameter-file section, executable) and module.
BRIDGES = {"sim": ("sim_bridge", "porl_ros.nodes.sim_bridge"), "arm": ("arm_bridge", "porl_ros.nodes.arm_bridge")}
# Extra parameter file of a bridge kind (applied after the base and profile files).
BRIDGE_CONFIGS = {"sim": None, "arm": "arm.yaml"}


def finetune_graph(num_bridges: int = 1, bridge: str = "sim") -> list[NodeSpec]:
    """The nodes of a fine-tuning run: one learner; per bridge a bridge, an exploration
    controller and a policy server, namespaced `bridge_<i>` when there are several.
    `bridge`: "sim" (embedded simulator) or "arm" (a real arm through its ROS 2 drivers)."""
    if num_bridges < 1:
        raise ValueError(f"num_bridges must be >= 1, got {num_bridges}")
    if bridge not in BRIDGES:
        raise ValueError(f"unknown bridge '{bridge}'; choose one of {sorted(BRIDGES)}")
    bridge_name, bridge_module = BRIDGES[bridge]
    nodes = [NodeSpec("learner", "learner", "porl_ros.nodes.learner",
                      parameters={"num_bridges": num_bridges})]
    for index in range(num_bridges):
        namespace = f"bridge_{index}" if num_bridges > 1 else ""
        per_bridge = {"bridge_id": index}
        nodes += [
            NodeSpec("policy_server", "policy_server", "porl_ros.nodes.policy_server", namespace),
            NodeSpec("exploration_controller", "exploration_controller",
                     "porl_ros.nodes.exploration_controller", namespace, dict(per_bridge)),
            NodeSpec(bridge_name, bridge_name, bridge_module, namespace, dict(per_bridge)),
        ]
    return nodes


# Per-bridge seeds are seed + bridge_id * stride, so bridges never replay one another's
# episodes and exploration noise (episode k of a bridge is seeded seed + k).
BRIDGE_SEED_STRIDE = 100_000


def node_parameters(spec: NodeSpec, run_parameters: dict) -> dict:
    """The parameters one node is started with on top of the parameter files: the run's
    (checkpoint, env, seed, ...) plus the graph's own; a bridge's nodes get their own seed."""
    merged = {**run_parameters, **spec.parameters}
    if "bridge_id" in spec.parameters and "seed" in merged:
        merged["seed"] = int(merged["seed"]) + BRIDGE_SEED_STRIDE * int(spec.parameters["bridge_id"])
    return merged


ROLES = ("all", "learner", "robot")


def nodes_for_role(nodes: list[NodeSpec], role: str, bridge_ids: str = "") -> list[NodeSpec]:
    """The part of the graph one machine runs: 'all', the 'learner' alone, or the 'robot' side
    (per bridge: bridge, exploration controller, policy server), optionally only `bridge_ids`
    ("0,2"). Raises ValueError naming what is wrong."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}'; choose one of {list(ROLES)}")
    if role == "all":
        return nodes
    if role == "learner":
        return [spec for spec in nodes if spec.name == "learner"]
    robot = [spec for spec in nodes if spec.name != "learner"]
    if not bridge_ids:
        return robot
    try:
        wanted = {int(item) for item in bridge_ids.split(",")}
    except ValueError:
        raise ValueError(f"bridge ids {bridge_ids!r}: expected comma-separated integers, e.g. 0,1") from None
    known = {spec.parameters["bridge_id"] for spec in robot if "bridge_id" in spec.parameters}
    if not wanted <= known:
        raise ValueError(f"bridge ids {bridge_ids!r}: ids {sorted(wanted - known)} are not in 0..{max(known)} "
                         f"(num_bridges {len(known)})")
    # The policy server has no bridge_id; it shares its namespace with its bridge.
    namespaces = {spec.namespace for spec in robot if spec.parameters.get("bridge_id") in wanted}
    return [spec for spec in robot if spec.namespace in namespaces]


def config_files(profile: str) -> list[str]:
    """The parameter files (names inside config/) for a profile, in the order applied."""
    if profile not in PROFILE_CONFIGS:
        raise ValueError(f"unknown profile '{profile}'; choose one of {sorted(PROFILE_CONFIGS)}")
    return [BASE_CONFIG, PROFILE_CONFIGS[profile]]


def source_config_dir() -> Path:
    """config/ of a source checkout (editable install); the launch file uses the share dir."""
    return Path(__file__).resolve().parents[1] / "config"
