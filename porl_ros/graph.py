"""The one description of the fine-tuning graph: node names, executables and classes,
namespaces, parameter files, topic names, the run's arguments and which node parameters
each one sets. `launch/finetune.launch.py` (for a ROS 2 install) and `porl-ros run` (this
project's own runner) are both built from it, so they cannot drift apart. No rclpy or torch
import here: the launch file and the tests read it as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = "porl_ros"

# Node names: also their sections in the parameter files and their executables.
LEARNER, POLICY_SERVER, CONTROLLER = "learner", "policy_server", "exploration_controller"
SIM_BRIDGE, ARM_BRIDGE, SIM_HARDWARE = "sim_bridge", "arm_bridge", "sim_hardware"
RECORDER = "recorder"
# name -> (module whose main() runs it, its rclpy Node class)
NODE_CLASSES = {
    LEARNER: ("porl_ros.nodes.learner", "LearnerNode"),
    POLICY_SERVER: ("porl_ros.nodes.policy_server", "PolicyServer"),
    CONTROLLER: ("porl_ros.nodes.exploration_controller", "ExplorationController"),
    SIM_BRIDGE: ("porl_ros.nodes.sim_bridge", "SimBridge"),
    ARM_BRIDGE: ("porl_ros.nodes.arm_bridge", "ArmBridge"),
    SIM_HARDWARE: ("porl_ros.nodes.sim_hardware", "SimHardware"),  # the arm tests' stand-in robot
    RECORDER: ("porl_ros.nodes.recorder", "Recorder"),  # the run's bag and the live Foxglove view
}
BRIDGES = {"sim": SIM_BRIDGE, "arm": ARM_BRIDGE}  # bridge kind -> node
BRIDGE_NODES = frozenset(BRIDGES.values())

# Timing modes (learner and bridges must agree): lockstep waits for each transition's ack.
LOCKSTEP, FREE_RUNNING = "lockstep", "free_running"
TIMING_MODES = (LOCKSTEP, FREE_RUNNING)
DEFAULT_ENV_ID = "metaworld/push-v3"

# Topics and the service (defaults of the nodes' name parameters). Relative names resolve in a
# bridge's namespace (bridge_<i>/porl/...); absolute ones are shared by every bridge.
OBSERVATION_TOPIC, ACTION_TOPIC, GET_ACTION_SERVICE = "porl/observation", "porl/action", "porl/get_action"
TRANSITION_TOPIC, ACK_TOPIC = "/porl/transition", "/porl/transition_ack"
WEIGHTS_TOPIC, STATUS_TOPIC, MARKERS_TOPIC = "/porl/policy_weights", "/porl/status", "/porl/markers"
DEFAULT_RUN_DIR = "runs/latest"  # the learner's output (and an arm bridge's e-stop latch) by default
SIM_JOINT_STATES_TOPIC, ARM_JOINT_STATES_TOPIC = "porl/joint_states", "/joint_states"
DIAGNOSTICS_TOPIC = "/diagnostics"
# The recorder keeps each weights message without its blob (version, format, stamp) on this topic.
WEIGHTS_VERSION_TOPIC = "/porl/policy_weights/version"
DEFAULT_FOXGLOVE_PORT = 8765

# Parameter files in config/: a profile's file, then the bridge kind's. They hold overrides only:
# every default lives in the settings classes (porl_ros/nodes/settings.py). gpu: the defaults.
PROFILE_CONFIGS = {"cpu": "profile_cpu.yaml", "gpu": None}
BRIDGE_CONFIGS = {"sim": None, "arm": "arm.yaml"}
ROLES = ("all", "learner", "robot")


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph."""

    name: str  # ROS node name; also its section in the parameter files
    executable: str  # console entry point (`ros2 run porl_ros <executable>`)
    module: str  # Python module whose main() runs the node
    node_class: str  # its rclpy Node subclass in `module` (all nodes in one process)
    namespace: str = ""
    # Parameters set by the graph itself (on top of the parameter files).
    parameters: dict = field(default_factory=dict)
    # Defaults the graph chooses that a run's own parameters (--param) may still override.
    defaults: dict = field(default_factory=dict)


# A simulator has nothing to protect from an action computed on a state unlike the policy's
# training data (a pushed puck that tipped over is 100+ training deviations off in its
# orientation, which BC demonstrations never vary), and the transitions from there are data the
# critic needs; a refused state leaves the lockstep bridge re-sending its observation for ever.
# So with the sim bridge the policy server refuses only overflowing states; a real arm keeps the
# default bound (its bridge stops the arm and waits for the operator).
SIM_POLICY_SERVER = {"max_normalised_state": 1e9}


def node_spec(name: str, namespace: str = "", parameters: dict | None = None, defaults: dict | None = None) -> NodeSpec:
    module, node_class = NODE_CLASSES[name]
    return NodeSpec(name, name, module, node_class, namespace, dict(parameters or {}), dict(defaults or {}))


def records(bridge: str = "sim", record: bool | None = None) -> bool:
    """Whether a run records its bag: `record` if given, else on for the embedded simulator."""
    return bridge == "sim" if record is None else bool(record)


def finetune_graph(num_bridges: int = 1, bridge: str = "sim", record: bool | None = None,
                   foxglove: int | None = None) -> list[NodeSpec]:
    """The nodes of a fine-tuning run: one learner; per bridge a bridge, an exploration
    controller and a policy server, namespaced `bridge_<i>` when there are several; and a
    recorder when the run records a bag (`records(bridge, record)`) or serves the live view
    (`foxglove`: a port). `bridge`: "sim" (embedded simulator) or "arm" (a real arm through
    its ROS 2 drivers)."""
    if num_bridges < 1:
        raise ValueError(f"num_bridges must be >= 1, got {num_bridges}")
    if bridge not in BRIDGES:
        raise ValueError(f"unknown bridge '{bridge}'; choose one of {sorted(BRIDGES)}")
    recording = records(bridge, record)
    recorder = recording or bool(foxglove)
    nodes = [node_spec(LEARNER, parameters={"num_bridges": num_bridges})]
    for index in range(num_bridges):
        namespace = f"bridge_{index}" if num_bridges > 1 else ""
        # With a recorder, the first transition must reach the learner too, not only the recorder.
        bridge_defaults = {"min_transition_subscribers": 2} if recorder else {}
        nodes += [node_spec(POLICY_SERVER, namespace, defaults=SIM_POLICY_SERVER if bridge == "sim" else None),
                  node_spec(CONTROLLER, namespace, {"bridge_id": index}),
                  node_spec(BRIDGES[bridge], namespace, {"bridge_id": index}, bridge_defaults)]
    if recorder:
        nodes.append(node_spec(RECORDER, parameters={"num_bridges": num_bridges, "bridge": bridge,
                                                     "record": recording}))
    return nodes


# Reliability a recorder subscribes with: "reliable" for the data streams (nothing lost),
# "best_effort" for what is published at a rate (it matches reliable publishers too),
# "latched" for the weights (the latest version at once).
RELIABLE, BEST_EFFORT, LATCHED = "reliable", "best_effort", "latched"


def recorded_topics(num_bridges: int = 1, bridge: str = "sim") -> list[tuple[str, str, str]]:
    """(topic, message type, subscription kind) of what a run records and shows live:
    observations, actions, transitions, status, markers, joint states, diagnostics and the
    weights (recorded as version events on WEIGHTS_VERSION_TOPIC, without the blob)."""
    iface = "porl_ros_interfaces/msg/"
    out = []
    for index in range(num_bridges):
        prefix = f"/bridge_{index}/" if num_bridges > 1 else "/"
        out += [(prefix + OBSERVATION_TOPIC, iface + "Observation", RELIABLE),
                (prefix + ACTION_TOPIC, iface + "Action", RELIABLE)]
        if bridge == "sim":
            out.append((prefix + SIM_JOINT_STATES_TOPIC, "sensor_msgs/msg/JointState", BEST_EFFORT))
    if bridge == "arm":
        out.append((ARM_JOINT_STATES_TOPIC, "sensor_msgs/msg/JointState", BEST_EFFORT))
    out += [(TRANSITION_TOPIC, iface + "Transition", RELIABLE),
            (STATUS_TOPIC, iface + "TrainingStatus", BEST_EFFORT),
            (MARKERS_TOPIC, "visualization_msgs/msg/MarkerArray", BEST_EFFORT),
            (DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", BEST_EFFORT),
            (WEIGHTS_TOPIC, iface + "PolicyWeights", LATCHED)]
    return out


# ---------------------------------------------------------------------------- run arguments
@dataclass(frozen=True)
class RunArgument:
    """An argument of a run: `name:=value` of the launch file, `--name` of `porl-ros run`."""

    name: str
    help: str
    type: type = str
    default: Any = None  # None: not passed on, the nodes' own defaults (and the profile) apply
    sets: tuple[str, ...] = ()  # the "node.parameter"s it sets; none: it shapes the graph
    choices: tuple = ()
    runner_option: bool = True  # False: `porl-ros run` derives it (run_dir from its own --run-dir)

    def parse(self, text: str) -> Any:
        """A launch argument's text as a value ('' is the unset None)."""
        if text == "" and self.default is None:
            return None
        if self.type is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{self.name}: expected true or false, got {text!r}")
            return text.lower() == "true"
        return self.type(text)

    @property
    def default_text(self) -> str:
        return "" if self.default is None else str(self.default).lower() if self.type is bool else str(self.default)


_EVERY_NODE = (LEARNER, POLICY_SERVER, CONTROLLER, SIM_BRIDGE, ARM_BRIDGE)
_BRIDGE_NODES = (SIM_BRIDGE, ARM_BRIDGE)

RUN_ARGUMENTS = (
    RunArgument("checkpoint", "pre-trained actor directory (actor.safetensors + meta.json)", str, "",
                tuple(f"{n}.checkpoint" for n in _EVERY_NODE)),
    RunArgument("env", "environment id of the sim bridge (and of the learner's sizes)", str, DEFAULT_ENV_ID,
                (f"{LEARNER}.env_id", f"{SIM_BRIDGE}.env_id")),
    RunArgument("timing_mode", "lockstep (simulators) or free_running (real robots)", str, LOCKSTEP,
                (f"{LEARNER}.timing_mode",) + tuple(f"{n}.timing_mode" for n in _BRIDGE_NODES), TIMING_MODES),
    RunArgument("seed", "seed of the run (each bridge's nodes get seed + bridge_id * 100000)", int, 0,
                tuple(f"{n}.seed" for n in _EVERY_NODE)),
    RunArgument("episode_steps", "episode length (default: the bridge's max_episode_steps)", int, None,
                tuple(f"{n}.max_episode_steps" for n in _BRIDGE_NODES)),
    RunArgument("steps", "total env steps (default: the profile's learner total_env_steps)", int, None,
                (f"{LEARNER}.total_env_steps",)),
    RunArgument("presample_steps", "T, pre-sample env steps (default: the profile's)", int, None,
                (f"{LEARNER}.presample_steps",)),
    RunArgument("eval_every", "save the actor every N env steps for evaluation (porl-ros run evaluates each in "
                "its own simulator; default: the learner's snapshot_every_env_steps)", int, None,
                (f"{LEARNER}.snapshot_every_env_steps",)),
    RunArgument("run_dir", "learner output directory", str, None, (f"{LEARNER}.run_dir",), runner_option=False),
    RunArgument("run_id", "identity of the run: the learner, the bridges and the policy server ignore another "
                "run's messages (porl-ros run: a random one per run with --role all, kept on --resume; with split "
                "roles give the same on both hosts; empty: accept any)", str, None,
                (f"{LEARNER}.run_id", f"{POLICY_SERVER}.run_id") + tuple(f"{n}.run_id" for n in _BRIDGE_NODES)),
    RunArgument("resume", "continue the learner's run in its run dir from the last checkpoint + transition log",
                bool, False, (f"{LEARNER}.resume",)),
    RunArgument("profile", "learner sizing: cpu (a 2-core CPU) or gpu (the defaults: the paper's sizes)",
                str, "cpu", choices=tuple(sorted(PROFILE_CONFIGS))),
    RunArgument("num_bridges", "bridges feeding the one learner", int, 1),
    RunArgument("bridge", "sim (embedded simulator / RLBench) or arm (a real arm's ROS 2 drivers)", str, "sim",
                choices=tuple(sorted(BRIDGES))),
    RunArgument("arm_config", "parameter file of the arm bridge (default: the package's config/arm.yaml)", str, ""),
    RunArgument("role", "nodes this machine runs: all, learner, or robot (bridge + exploration controller + "
                "policy server per bridge)", str, "all", choices=ROLES),
    RunArgument("bridge_ids", "with role robot: only these bridges, e.g. '0,1' (default: all)", str, ""),
    RunArgument("record", "record the run's topics into <run dir>/bag (rosbag2 MCAP); default: on for the "
                "embedded simulator, off for an arm (--no-record / --record); split across hosts, give both the "
                "same (the bridges wait for the recorder)", bool, None),
    RunArgument("bag_dir", "bag directory of the recorder", str, None, (f"{RECORDER}.bag_dir",),
                runner_option=False),
    RunArgument("foxglove", f"serve the run live over the Foxglove WebSocket protocol on this port "
                f"(--foxglove alone: {DEFAULT_FOXGLOVE_PORT}; default: off)", int, None,
                (f"{RECORDER}.foxglove_port",)),
    RunArgument("foxglove_host", "address the Foxglove server binds to (0.0.0.0: every interface; see "
                "docs/security.md)", str, "127.0.0.1", (f"{RECORDER}.foxglove_host",)),
)
RUN_ARGUMENT = {arg.name: arg for arg in RUN_ARGUMENTS}


def run_parameters(values: dict[str, Any]) -> dict[str, dict]:
    """Per node name, the parameters the run's arguments set (`values` by argument name; a
    missing one takes its default, and None sets nothing)."""
    out: dict[str, dict] = {name: {} for name in NODE_CLASSES}
    for arg in RUN_ARGUMENTS:
        value = values.get(arg.name, arg.default)
        if value is None:
            continue
        for target in arg.sets:
            node, parameter = target.split(".")
            out[node][parameter] = value
    return out


# Per-bridge seeds are seed + bridge_id * stride, so bridges never replay one another's
# episodes and exploration noise (episode k of a bridge is seeded seed + k).
BRIDGE_SEED_STRIDE = 100_000


def node_label(spec: NodeSpec) -> str:
    """A node's name in logs and run files: 'bridge1.sim_bridge', or 'learner' outside a namespace."""
    return f"{spec.namespace}.{spec.name}" if spec.namespace else spec.name


def with_run_files(spec: NodeSpec, params: dict, run_dir: Path | str) -> dict:
    """A node's parameters plus the files it keeps in the run directory: an arm bridge's
    emergency-stop latch (so an e-stop survives a restart of the bridge or of the run)."""
    if spec.name == ARM_BRIDGE and not params.get("emergency_stop_file"):
        return {**params, "emergency_stop_file": str(Path(run_dir) / ARM_BRIDGE / f"{node_label(spec)}.emergency_stop")}
    return params


def node_parameters(spec: NodeSpec, run_parameters: dict) -> dict:
    """The parameters one node is started with on top of the parameter files: the run's
    (checkpoint, env, seed, ...) plus the graph's own; a bridge's nodes get their own seed."""
    merged = {**spec.defaults, **run_parameters, **spec.parameters}
    if "bridge_id" in spec.parameters and "seed" in merged:
        merged["seed"] = int(merged["seed"]) + BRIDGE_SEED_STRIDE * int(spec.parameters["bridge_id"])
    return merged


def nodes_for_role(nodes: list[NodeSpec], role: str, bridge_ids: str = "") -> list[NodeSpec]:
    """The part of the graph one machine runs: 'all', the 'learner' alone, or the 'robot' side
    (per bridge: bridge, exploration controller, policy server), optionally only `bridge_ids`
    ("0,2"). Raises ValueError naming what is wrong."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}'; choose one of {list(ROLES)}")
    if role == "all":
        return nodes
    if role == "learner":  # the recorder runs beside the learner
        return [spec for spec in nodes if spec.name in (LEARNER, RECORDER)]
    robot = [spec for spec in nodes if spec.name not in (LEARNER, RECORDER)]
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
    return [name for name in (PROFILE_CONFIGS[profile],) if name]


def node_config_files(spec_name: str, profile: str, config_dir: Path | str, arm_config: str = "") -> list[str]:
    """Paths of the parameter files one node is started with: the profile's, then (arm bridge)
    the arm's (`arm_config`, default config/arm.yaml)."""
    files = [str(Path(config_dir) / name) for name in config_files(profile)]
    if spec_name == ARM_BRIDGE:
        files.append(arm_config or str(Path(config_dir) / BRIDGE_CONFIGS["arm"]))
    return files


def source_config_dir() -> Path:
    """config/ of a source checkout (editable install); the launch file uses the share dir."""
    return Path(__file__).resolve().parents[1] / "config"
