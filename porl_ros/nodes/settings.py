"""Every node's runtime settings, one class per node (no rclpy: the docs and tests read them).

A node's ROS parameters are the fields of the classes in NODE_SETTINGS[name]: its runtime
class below plus the algorithm's classes it applies (PorlConfig for the learner,
ExplorationConfig for the exploration controller, EpisodeSettings for the bridges). Each
field carries its default, description and check (porl_ros/core/settings.py); the parameter
files in config/ hold overrides only, and docs/parameters.md is generated from these classes
(scripts/gen_parameter_docs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from porl_ros import graph
from porl_ros.core.config import DEVICE, PorlConfig
from porl_ros.core.exploration import ExplorationConfig
from porl_ros.core.rollout import EpisodeSettings
from porl_ros.core.settings import (NON_NEGATIVE, POSITIVE, Check, Settings, SettingError, field_names, one_of,
                                    setting, within)

TIMING_MODE = one_of(*graph.TIMING_MODES)
JOINT_VELOCITY, CARTESIAN_VELOCITY = "joint_velocity", "cartesian_velocity"
DEFAULT_JOINTS = tuple(f"joint_{i}" for i in range(1, 8))


def _diagnostics_rate() -> Any:
    return setting(1.0, "Rate of this node's DiagnosticArray on /diagnostics (0: none).", NON_NEGATIVE)


@dataclass
class LearnerSettings(Settings):
    """The learner node's runtime (its algorithm settings are PorlConfig's)."""

    checkpoint: str = setting("", "Pre-trained actor to fine-tune (actor.safetensors + meta.json). Empty: SAC "
                                  "from scratch, sizes from env_id.")
    env_id: str = setting(graph.DEFAULT_ENV_ID, "Only used for sizes and bounds when checkpoint is empty.")
    run_dir: str = setting(graph.DEFAULT_RUN_DIR, "Directory for checkpoints, metrics.jsonl and the final actor.")
    resume: bool = setting(False, "Continue the run whose state is in run_dir/state (last checkpoint + "
                                  "transition log). False refuses a run_dir that already holds learner state.")
    timing_mode: str = setting(graph.LOCKSTEP, "'lockstep' or 'free_running' (must match the bridges).",
                               TIMING_MODE)
    num_bridges: int = setting(1, "Number of bridges feeding this learner (bridge ids 0..N-1).", POSITIVE)
    run_id: str = setting("", "Identity of this run: transitions carrying another run_id are rejected, and it "
                              "is sent with every status and ack (porl-ros run sets a random one per run, kept "
                              "on --resume; empty: accept any).")
    total_env_steps: int = setting(100_000, "End of the run: final checkpoint, then the learner exits "
                                            "(0: run until stopped).", NON_NEGATIVE)
    replay_capacity: int = setting(1_000_000, "Replay buffer capacity (transitions).", POSITIVE)
    max_abs_reward: float = setting(1e6, "Transitions with |reward| above this are rejected.", POSITIVE)
    torch_threads: int = setting(0, "CPU threads for torch (0: torch's default). In lockstep beside the other "
                                    "nodes on a small CPU, 1 avoids OpenMP threads spinning against the "
                                    "simulator.", NON_NEGATIVE)
    weights_every_env_steps: int = setting(10, "Lockstep: publish new actor weights at most every N env steps.",
                                           POSITIVE)
    max_weights_rate_hz: float = setting(2.0, "free_running: at most this many weight broadcasts per second.",
                                         POSITIVE)
    checkpoint_every_env_steps: int = setting(5000, "Full learner checkpoint (and actor_latest) every N env "
                                                    "steps (0: only at shutdown).", NON_NEGATIVE)
    snapshot_every_env_steps: int = setting(1000, "Save the actor every N env steps into run_dir/snapshots/"
                                                  "step_<N> (checksummed), where porl-ros run evaluates it in its "
                                                  "own simulator, off the control loop; 0: none.", NON_NEGATIVE)
    keep_checkpoints: int = setting(2, "Full learner checkpoints kept (the newest that verifies is resumed).",
                                    POSITIVE)
    log_fsync: bool = setting(False, "Lockstep: fsync the transition log before each ack (an acked transition "
                                     "also survives a power loss, at ~3 ms per step). False: written before the "
                                     "ack (survives a killed learner) and fsync'd every log_sync_period_s.")
    log_sync_period_s: float = setting(0.25, "fsync the transition log at least this often (free_running, or "
                                             "lockstep with log_fsync false).", POSITIVE)
    status_rate_hz: float = setting(2.0, "TrainingStatus publishing rate.", POSITIVE)
    tensorboard: bool = setting(True, "Write TensorBoard scalars (losses, Q statistics, alpha, success, return, "
                                      "rates, phase, Q calibration gap) into run_dir/tensorboard.")
    stall_warn_s: float = setting(10.0, "Diagnostics: WARN when no transition arrived for this long mid-run.",
                                  POSITIVE)
    diagnostics_rate_hz: float = _diagnostics_rate()
    transition_topic: str = setting(graph.TRANSITION_TOPIC, "Transitions from the bridges.")
    ack_topic: str = setting(graph.ACK_TOPIC, "Lockstep acknowledgements to the bridges.")
    weights_topic: str = setting(graph.WEIGHTS_TOPIC, "Versioned actor weights (latched).")
    status_topic: str = setting(graph.STATUS_TOPIC, "TrainingStatus.")


@dataclass
class ControllerSettings(Settings):
    """The exploration controller's runtime (its algorithm settings are ExplorationConfig's)."""

    checkpoint: str = setting("", "Actor checkpoint whose metadata gives the action bounds (required).")
    bridge_id: int = setting(0, "Bridge whose observations this controller answers.", NON_NEGATIVE)
    seed: int = setting(0, "Seed of the epsilon-greedy generator.", NON_NEGATIVE)
    request_timeout_s: float = setting(15.0, "Retry a GetAction call unanswered for this long.", POSITIVE)
    observation_topic: str = setting(graph.OBSERVATION_TOPIC, "Observations from the bridge.")
    action_topic: str = setting(graph.ACTION_TOPIC, "Actions to the bridge.")
    get_action_service: str = setting(graph.GET_ACTION_SERVICE, "The policy server's GetAction service.")
    diagnostics_rate_hz: float = _diagnostics_rate()


@dataclass
class PolicyServerSettings(Settings):
    checkpoint: str = setting("", "Actor checkpoint directory (actor.safetensors + meta.json) to serve until the "
                                  "learner publishes newer weights; empty: wait for the weights topic.")
    device: str = setting("cpu", "Torch device for inference: 'cpu', 'auto', 'cuda' or 'cuda:N'.", DEVICE)
    seed: int = setting(0, "Seed of the action-sampling generator (stochastic requests).", NON_NEGATIVE)
    get_action_service: str = setting(graph.GET_ACTION_SERVICE, "Service name of GetAction.")
    weights_topic: str = setting(graph.WEIGHTS_TOPIC, "Latched topic of versioned actor weights.")
    run_id: str = setting("", "Identity of this run: weights carrying another run_id (another run's learner on "
                              "the ROS domain, a forger) are ignored and counted; empty: accept any.")
    max_normalised_state: float = setting(100.0, "Refuse a GetAction state with a component farther than this "
                                                 "from the actor's training mean, in units of its training "
                                                 "standard deviation ((state - obs_mean) / obs_std; an actor "
                                                 "without statistics: the raw value). Such a state is far "
                                                 "outside what the policy was trained on.", POSITIVE)
    diagnostics_rate_hz: float = _diagnostics_rate()


@dataclass
class BridgeSettings(Settings):
    """What every bridge has towards the graph (bridge_protocol.BridgeNode)."""

    bridge_id: int = setting(0, "This bridge's id in transitions (several bridges can feed one learner).",
                             NON_NEGATIVE)
    timing_mode: str = setting(graph.LOCKSTEP, "'lockstep' (simulators) or 'free_running' (real robots).",
                               TIMING_MODE)
    control_rate_hz: float = setting(20.0, "Step rate in free_running mode.", POSITIVE)
    action_timeout_s: float = setting(10.0, "Re-publish an observation unanswered for this long.", POSITIVE)
    ack_timeout_s: float = setting(10.0, "Lockstep: re-publish a transition unacknowledged for this long.",
                                   POSITIVE)
    max_env_steps: int = setting(0, "Stop after this many steps (0: until the learner reports done).",
                                 NON_NEGATIVE)
    run_id: str = setting("", "Identity of this bridge's run: status and acks carrying another run_id (another "
                              "run's learner, a forger) are ignored, and it is sent with every transition "
                              "(porl-ros run sets it; empty: accept any).")
    first_seq: int = setting(0, "seq of this bridge's first transition: a resumed run continues the numbering "
                                "(porl-ros run --resume sets it from the learner's state).", NON_NEGATIVE)
    first_episode: int = setting(0, "Index of this bridge's first episode (seeded seed + index): a resumed run "
                                    "goes on with new episodes (porl-ros run --resume sets it).", NON_NEGATIVE)
    min_transition_subscribers: int = setting(1, "Wait until this many subscribers (the learner, plus e.g. a "
                                                 "recorder) are matched on the transition topic before the "
                                                 "first step.", POSITIVE)
    frame_id: str = setting("world", "frame_id of published headers.")
    observation_topic: str = setting(graph.OBSERVATION_TOPIC, "Observations to the controller.")
    action_topic: str = setting(graph.ACTION_TOPIC, "Actions from the controller.")
    transition_topic: str = setting(graph.TRANSITION_TOPIC, "Transitions to the learner.")
    ack_topic: str = setting(graph.ACK_TOPIC, "Lockstep acknowledgements from the learner.")
    status_topic: str = setting(graph.STATUS_TOPIC, "Learner status (its phase, in free_running mode).")


@dataclass
class SimBridgeSettings(BridgeSettings):
    env_id: str = setting(graph.DEFAULT_ENV_ID, "Environment back-end and task, e.g. 'metaworld/push-v3', "
                                                "'gymnasium/AdroitHandDoor-v1', 'rlbench/reach_target'.")
    seed: int = setting(0, "Episode k starts from seed + k (reproducible task variations).", NON_NEGATIVE)
    checkpoint: str = setting("", "Actor checkpoint: its observation/action sizes are checked against the "
                                  "environment at start (empty: no check).")
    frame_id: str = setting("world", "frame_id of published headers, markers and joint states.")
    viz_rate_hz: float = setting(10.0, "Rate of rviz markers and joint states (0: none); a timer, not every "
                                       "step, so a fast simulator pays little for them.", NON_NEGATIVE)
    viz_arrow_scale: float = setting(0.1, "Length in metres of the action arrow per unit of action.", POSITIVE)
    markers_topic: str = setting(graph.MARKERS_TOPIC, "visualization_msgs/MarkerArray for rviz (one topic for "
                                                      "all bridges; marker namespaces carry the bridge id).")
    joint_states_topic: str = setting("porl/joint_states", "sensor_msgs/JointState, when the back-end has joints.")
    diagnostics_rate_hz: float = _diagnostics_rate()


@dataclass
class ArmBridgeSettings(BridgeSettings):
    """The arm bridge: its robot's drivers, safety layer, reward and reset (see docs/real_arm.md)."""

    env_id: str = setting("arm/real", "Name of this robot/task in logs (no simulator is created).")
    seed: int = setting(0, "Unused by a real arm; accepted so the runner can set it on any bridge.", NON_NEGATIVE)
    checkpoint: str = setting("", "Actor checkpoint: its observation/action sizes are checked against this "
                                  "arm's at start (empty: no check).")
    timing_mode: str = setting(graph.FREE_RUNNING, "'free_running' (steps at control_rate_hz; for real arms) or "
                                                   "'lockstep' (arm held still while the learner catches up).",
                               TIMING_MODE)
    control_rate_hz: float = setting(20.0, "Control (step) rate; also the command streaming rate.", POSITIVE)
    frame_id: str = setting("world", "frame_id of published porl headers.")
    diagnostics_rate_hz: float = _diagnostics_rate()
    # ---- the robot's drivers
    command_mode: str = setting(JOINT_VELOCITY, "'joint_velocity' (Float64MultiArray to a forward velocity "
                                                "controller) or 'cartesian_velocity' (TwistStamped to MoveIt "
                                                "Servo).", one_of(JOINT_VELOCITY, CARTESIAN_VELOCITY))
    joint_names: tuple[str, ...] = setting(DEFAULT_JOINTS, "Arm joints to observe (and command, in joint mode), "
                                                           "in order.")
    joint_states_topic: str = setting("/joint_states", "sensor_msgs/JointState from the driver.")
    joint_velocity_command_topic: str = setting("/forward_velocity_controller/commands", "std_msgs/"
                                                "Float64MultiArray joint velocities (joint_velocity mode).")
    twist_command_topic: str = setting("/servo_node/delta_twist_cmds", "geometry_msgs/TwistStamped (cartesian "
                                                                       "mode).")
    command_frame_id: str = setting("base_link", "Frame of twist commands and of the workspace box; the pose "
                                                 "topic must use it.")
    ee_pose_topic: str = setting("", "geometry_msgs/PoseStamped end-effector pose (required in cartesian mode; "
                                     "when set, its position is appended to the observation).")
    cartesian_angular: bool = setting(False, "Cartesian mode: the action has 3 angular components too.")
    gripper_command_topic: str = setting("", "Gripper command topic (empty: no gripper in action/observation).")
    gripper_command_type: str = setting("float64_multi_array", "'float64_multi_array' or 'float64'.",
                                        one_of("float64_multi_array", "float64"))
    gripper_joint: str = setting("", "Gripper joint in JointState for the observed opening (empty: last "
                                     "command).")
    gripper_range: tuple[float, ...] = setting((0.0, 0.08), "Gripper opening [closed, open] the action's "
                                                            "[-1, 1] maps to.")
    # ---- safety
    joint_position_lower: tuple[float, ...] = setting((-1.0,), "Lower joint position limits (rad; one value: "
                                                               "all joints).")
    joint_position_upper: tuple[float, ...] = setting((1.0,), "Upper joint position limits (rad; one value: "
                                                              "all joints).")
    joint_position_margin: float = setting(0.05, "Within this of a limit a joint is only commanded inward (rad).",
                                           NON_NEGATIVE)
    max_joint_velocity: tuple[float, ...] = setting((0.2,), "Joint speed limits (rad/s; one value: all joints).")
    max_joint_velocity_change: tuple[float, ...] = setting((0.05,), "Action-rate limit: max change of a joint "
                                                                    "velocity command per control period (rad/s).")
    joint_action_scale: tuple[float, ...] = setting((0.2,), "rad/s per unit of joint action (one value: all "
                                                            "joints).")
    linear_action_scale: float = setting(0.05, "m/s per unit of linear action.", POSITIVE)
    angular_action_scale: float = setting(0.2, "rad/s per unit of angular action.", POSITIVE)
    max_linear_speed: float = setting(0.05, "Per-axis linear speed limit (m/s).", POSITIVE)
    max_angular_speed: float = setting(0.2, "Per-axis angular speed limit (rad/s).", POSITIVE)
    max_linear_change: float = setting(0.01, "Action-rate limit of linear velocity per period (m/s).", POSITIVE)
    max_angular_change: float = setting(0.05, "Action-rate limit of angular velocity per period (rad/s).",
                                        POSITIVE)
    workspace_min: tuple[float, ...] = setting((0.2, -0.4, 0.05), "Workspace box lower corner in "
                                                                  "command_frame_id (m).")
    workspace_max: tuple[float, ...] = setting((0.8, 0.4, 0.8), "Workspace box upper corner in command_frame_id "
                                                                "(m).")
    workspace_margin: float = setting(0.01, "Outward motion stops this far inside the box (m).", NON_NEGATIVE)
    watchdog_timeout_periods: float = setting(
        1.5, "Zero velocity once actions or joint states are older than this many control periods.",
        Check(within(0.5, 1.75).test, "in [0.5, 1.75] (so the stop comes within 2 periods)"))
    watchdog_checks_per_period: int = setting(8, "Watchdog evaluations per control period.", within(2, 50))
    emergency_stop_service: str = setting("porl/emergency_stop", "std_srvs/SetBool: true holds the arm, false "
                                                                 "releases it.")
    emergency_stop_file: str = setting("", "File that latches the emergency stop across restarts: written when "
                                           "it is engaged, removed only by a release (SetBool false); a bridge "
                                           "that starts while it exists starts emergency-stopped. `porl-ros run` "
                                           "sets <run dir>/arm_bridge/<node>.emergency_stop; empty: the latch "
                                           "lives only as long as the process.")
    # ---- reward, success, reset
    reward_function: str = setting("", "'module:function' (obs, action, next_obs, **reward_kwargs) -> (reward, "
                                       "success), e.g. 'porl_ros.rewards:joint_reach'.")
    reward_kwargs: str = setting("{}", "JSON object of keyword arguments for reward_function.")
    success_topic: str = setting("", "std_msgs/Bool success signal; alone it gives reward 1 on success, else 0; "
                                     "with reward_function it decides success.")
    home_joint_positions: tuple[float, ...] = setting((0.0,), "Reset pose (rad; one value: all joints); joint "
                                                              "mode.")
    home_ee_position: tuple[float, ...] = setting((0.5, 0.0, 0.4), "Reset end-effector position (m); cartesian "
                                                                   "mode.")
    home_gripper: float = setting(1.0, "Gripper action at reset (-1 closed .. 1 open).", within(-1.0, 1.0))
    reset_gain: float = setting(2.0, "Proportional gain of the reset controller (1/s).", POSITIVE)
    reset_tolerance: float = setting(0.02, "Reset is done when every joint (rad) / the end effector (m) is this "
                                           "close.", POSITIVE)
    reset_timeout_s: float = setting(20.0, "Give up homing after this long (logged; the episode starts anyway).",
                                     POSITIVE)


@dataclass
class SimHardwareSettings(Settings):
    """The simulated velocity-controlled arm the arm bridge's tests drive (not part of a run)."""

    joint_names: tuple[str, ...] = setting(DEFAULT_JOINTS, "Arm joints, in order (at least 4 for the kinematics).")
    gripper_joint: str = setting("gripper", "Name of the gripper's joint in JointState (empty: no gripper).")
    rate_hz: float = setting(100.0, "Integration and JointState publishing rate.", POSITIVE)
    position_lower: tuple[float, ...] = setting((-2.8,), "Hard lower joint limits (rad); one value for all joints.")
    position_upper: tuple[float, ...] = setting((2.8,), "Hard upper joint limits (rad).")
    max_velocity: tuple[float, ...] = setting((2.0,), "Hard joint speed limits (rad/s); faster commands saturate.")
    initial_positions: tuple[float, ...] = setting((0.0, 0.4, 0.8, 0.4, 0.0, 0.0, 0.0), "Joint positions at "
                                                                                       "start.")
    link_lengths: tuple[float, ...] = setting((0.4, 0.4, 0.1), "Lengths of the three pitch links (m).")
    base_height: float = setting(0.3, "Height of the first pitch joint (m).", NON_NEGATIVE)
    gripper_range: tuple[float, ...] = setting((0.0, 0.08), "Gripper opening range (m).")
    gripper_speed: float = setting(0.1, "Gripper opening speed (m/s).", POSITIVE)
    goal_joint_positions: tuple[float, ...] = setting((0.0,), "Goal of the success signal (one value: all "
                                                              "joints).")
    goal_tolerance: float = setting(0.05, "Success when every joint is within this of the goal (rad).", POSITIVE)
    command_timeout_s: float = setting(0.5, "Stop (zero velocity) when no velocity or twist command arrived for "
                                            "this long, as real drivers do (0: hold the last command forever).",
                                       NON_NEGATIVE)
    drift_velocity: tuple[float, ...] = setting((0.0,), "Joint velocity (rad/s) added to every command until "
                                                        "the command times out (a drifting controller, for "
                                                        "tests; one value: all joints).")
    frame_id: str = setting("base_link", "Frame of the published pose (and of accepted twists).")
    velocity_command_topic: str = setting("/forward_velocity_controller/commands", "Joint velocity commands.")
    twist_command_topic: str = setting("/servo_node/delta_twist_cmds", "Cartesian velocity commands.")
    gripper_command_topic: str = setting("/gripper_controller/commands", "Gripper opening commands.")
    joint_states_topic: str = setting("/joint_states", "Published joint states.")
    ee_pose_topic: str = setting("/ee_pose", "Published end-effector pose.")
    success_topic: str = setting("/task_success", "Published success flag.")


@dataclass
class RecorderSettings(Settings):
    """The recorder: the run's bag (rosbag2 MCAP) and the live Foxglove view (docs/monitoring.md)."""

    num_bridges: int = setting(1, "Bridges whose topics are recorded (bridge_<i> namespaces when > 1).", POSITIVE)
    bridge: str = setting("sim", "Bridge kind ('sim' or 'arm'): which joint-state topic there is.",
                          one_of(*sorted(graph.BRIDGES)))
    record: bool = setting(True, "Write the bag into bag_dir (false: only the live view).")
    bag_dir: str = setting("runs/latest_bag", "Bag directory (<name>_<i>.mcap + metadata.yaml); a directory "
                                              "that holds a bag gets one more file.")
    chunk_size_kib: int = setting(256, "MCAP chunk size: a chunk is compressed and flushed to the file when it "
                                       "holds this much, so a killed run loses at most one chunk.", POSITIVE)
    chunk_period_s: float = setting(2.0, "A chunk is also flushed when it is this old (quiet runs).", POSITIVE)
    foxglove_port: int = setting(0, "Serve the recorded topics live over the Foxglove WebSocket protocol on this "
                                    "port (0: off).", within(0, 65535))
    foxglove_host: str = setting("127.0.0.1", "Address the Foxglove server binds to (0.0.0.0: every interface; "
                                              "anyone who reaches it sees the run).")
    diagnostics_rate_hz: float = _diagnostics_rate()


# Each node's parameters: the fields of these classes, declared in this order.
NODE_SETTINGS: dict[str, tuple[type, ...]] = {
    graph.LEARNER: (PorlConfig, LearnerSettings),
    graph.CONTROLLER: (ExplorationConfig, ControllerSettings),
    graph.POLICY_SERVER: (PolicyServerSettings,),
    graph.SIM_BRIDGE: (EpisodeSettings, SimBridgeSettings),
    graph.ARM_BRIDGE: (EpisodeSettings, ArmBridgeSettings),
    graph.SIM_HARDWARE: (SimHardwareSettings,),
    graph.RECORDER: (RecorderSettings,),
}


# ---------------------------------------------------------------------------- parameter files
def file_sections(path: Path | str) -> dict[str, dict]:
    """node name -> the parameters a ROS 2 parameter file sets for it (`/**/name:` sections)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {key.rsplit("/", 1)[-1]: dict((section or {}).get("ros__parameters") or {})
            for key, section in data.items()}


def profile_values(node: str, profile: str, extra_files: tuple = ()) -> dict[str, Any]:
    """What the profile's parameter files (then `extra_files`) set for one node."""
    values: dict[str, Any] = {}
    paths = [graph.source_config_dir() / name for name in graph.config_files(profile)] + [Path(f) for f in extra_files]
    for path in paths:
        values.update(file_sections(path).get(node, {}))
    return values


def resolve(node: str, profile: str, overrides: dict[str, Any] | None = None) -> tuple:
    """The settings instances a node runs with: defaults <- profile files <- overrides."""
    values = {**profile_values(node, profile), **(overrides or {})}
    unknown = sorted(set(values) - set(field_names(*NODE_SETTINGS[node])))
    if unknown:
        raise SettingError(unknown[0], f"{node} has no parameter(s) {', '.join(unknown)}")
    return tuple(cls.pick(values) for cls in NODE_SETTINGS[node])
