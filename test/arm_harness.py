"""Shared by the arm bridge DDS tests: a controller + recorder node in the test process,
starting arm_bridge and sim_hardware, and the constants both sides use."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool

from graph_helpers import ObserverNode
from porl_ros.nodes.conversions import to_float32_field
from porl_ros.nodes.qos import STATUS_QOS, STREAM_QOS
from porl_ros_interfaces.msg import Action, Observation, Transition
from process_helpers import ProcessGroup, wait_until

RATE_HZ = 20.0
PERIOD = 1.0 / RATE_HZ
MAX_VELOCITY = 0.5
MAX_CHANGE = 0.25
LOWER, UPPER, MARGIN = -1.0, 1.0, 0.05
N_JOINTS = 7
VELOCITY_TOPIC = "/forward_velocity_controller/commands"
GOAL = [0.3, 0.3, 0.3, 0.3, 0.0, 0.0, 0.0]

JOINT_BRIDGE_PARAMS = {
    "control_rate_hz": RATE_HZ, "max_episode_steps": 60, "joint_position_lower": [LOWER],
    "joint_position_upper": [UPPER], "joint_position_margin": MARGIN, "max_joint_velocity": [MAX_VELOCITY],
    "max_joint_velocity_change": [MAX_CHANGE], "joint_action_scale": [2.0],  # > the limit: the clamp must act
    "gripper_command_topic": "/gripper_controller/commands", "gripper_joint": "gripper",
    "reward_function": "porl_ros.rewards:joint_reach", "reward_kwargs": '{"goal": %s}' % GOAL,
    "terminate_on_success": False, "home_joint_positions": [0.0], "reset_gain": 4.0,
}


def ros_args(params: dict) -> list[str]:
    out = ["--ros-args"]
    for key, value in params.items():
        if isinstance(value, str):
            value = f"'{value}'" if value.startswith("{") else value  # YAML: keep JSON a string
            out += ["-p", f"{key}:={value}"]
        else:
            out += ["-p", f"{key}:={value!r}"]
    return out


class Harness(ObserverNode):
    """Controller + recorder in the test process."""

    def __init__(self, cartesian: bool = False) -> None:
        super().__init__("porl_arm_test")
        self.lock = threading.Lock()
        self.observations: list[tuple[float, Observation]] = []
        self.transitions: list[Transition] = []
        self.commands: list[tuple[float, np.ndarray]] = []
        self.joint_states: list[tuple[float, np.ndarray]] = []
        self.poses: list[tuple[float, np.ndarray]] = []
        self.policy = None  # state -> action; None: observations go unanswered
        self.flood = False
        self.last_action_time = 0.0
        self.action_pub = self.node.create_publisher(Action, "/porl/action", STREAM_QOS)
        self.node.create_subscription(Observation, "/porl/observation", self._on_observation, STREAM_QOS)
        self.node.create_subscription(Transition, "/porl/transition", self.transitions.append, STREAM_QOS)
        if cartesian:
            self.node.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds", self._on_twist, 10)
        else:
            self.node.create_subscription(Float64MultiArray, VELOCITY_TOPIC, self._on_command, 10)
        self.node.create_subscription(JointState, "/joint_states", self._on_joint_state, STATUS_QOS)
        self.node.create_subscription(PoseStamped, "/ee_pose", self._on_pose, STATUS_QOS)
        self.estop = self.node.create_client(SetBool, "/porl/emergency_stop")
        self.bridge_health: dict[str, str] = {}  # the arm bridge's latest diagnostics values
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.start(spin_timeout_s=0.01)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith("arm_bridge"):
                self.bridge_health = {kv.key: kv.value for kv in status.values}

    def bridge_counter(self, key: str) -> int:
        return int(float(self.bridge_health.get(key, "0")))

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.commands.append((time.monotonic(), np.array(msg.data, dtype=np.float64)))

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        self.commands.append((time.monotonic(), np.array([t.linear.x, t.linear.y, t.linear.z,
                                                          t.angular.x, t.angular.y, t.angular.z])))

    def _on_joint_state(self, msg: JointState) -> None:
        self.joint_states.append((time.monotonic(), np.array(msg.position[:N_JOINTS])))

    def _on_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.poses.append((time.monotonic(), np.array([p.x, p.y, p.z])))

    def _on_observation(self, msg: Observation) -> None:
        self.observations.append((time.monotonic(), msg))
        if self.policy is not None:
            self.answer(msg)

    def answer(self, obs: Observation) -> None:
        state = np.asarray(obs.state, dtype=np.float32)
        if self.flood:
            # Garbage first (rejected), a stale answer (ignored), then an out-of-bounds one (clamped).
            for bad in (np.full(8, np.nan), np.ones(3), np.full(8, 1e6)):
                self._publish(obs.episode, obs.step, bad)
            self._publish(obs.episode, obs.step + 7, -np.ones(8))
        self._publish(obs.episode, obs.step, np.asarray(self.policy(state), dtype=np.float32))

    def _publish(self, episode: int, step: int, action: np.ndarray) -> None:
        msg = Action(bridge_id=0, episode=episode, step=step, exploratory=False, policy_version=0)
        msg.action = to_float32_field(action)
        self.action_pub.publish(msg)
        self.last_action_time = time.monotonic()

    def call_estop(self, engage: bool) -> SetBool.Response:
        assert self.estop.wait_for_service(timeout_sec=10)
        future = self.estop.call_async(SetBool.Request(data=engage))
        assert wait_until(future.done, 10)
        return future.result()

    def commands_after(self, t: float) -> list[tuple[float, np.ndarray]]:
        return [(s, c) for s, c in list(self.commands) if s > t]


def start_arm(group: ProcessGroup, tmp_path, bridge_params: dict, hardware_params: dict):
    hardware = group.start([sys.executable, "-m", "porl_ros.nodes.sim_hardware", *ros_args(hardware_params)],
                           log_path=tmp_path / "sim_hardware.log", env={"OMP_NUM_THREADS": "1"})
    bridge = group.start([sys.executable, "-m", "porl_ros.nodes.arm_bridge", *ros_args(bridge_params)],
                         log_path=tmp_path / "arm_bridge.log", env={"OMP_NUM_THREADS": "1"})
    return hardware, bridge


def logs(tmp_path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))


