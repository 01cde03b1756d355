"""A simulated velocity-controlled arm that speaks the same driver topics as a real one.

What it simulates: a 7-joint kinematic arm (a velocity integrator with hard joint
position and speed limits, like a ros2_control forward velocity controller on a real
arm), a parallel gripper, and the forward kinematics of a simple geometry (joint 0 yaws
the base; joints 1-3 pitch three links in the vertical plane; joints 4-6 are a wrist
that does not move the wrist centre, which is the end-effector point). It is not a
dynamics model: a commanded velocity is reached at once. Topics:
  in   velocity_command_topic  std_msgs/Float64MultiArray, one velocity per joint (held
                               until the next command, as forward command controllers do)
  in   twist_command_topic     geometry_msgs/TwistStamped, linear part mapped to the
                               joints by damped least squares (as MoveIt Servo would);
                               the angular part is ignored
  in   gripper_command_topic   std_msgs/Float64MultiArray (first value: opening, m)
                               (velocity and twist commands time out after command_timeout_s:
                               the arm stops, as real drivers do when their client dies)
  out  joint_states_topic      sensor_msgs/JointState at rate_hz (arm joints + gripper)
  out  ee_pose_topic           geometry_msgs/PoseStamped (end-effector position)
  out  success_topic           std_msgs/Bool: joints within goal_tolerance of the goal
"""

from __future__ import annotations

import time

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray

from porl_ros import graph
from porl_ros.nodes.params import ParameterError, as_dict, declare_settings, run_node
from porl_ros.nodes.qos import STATUS_QOS


def _broadcast(values, size: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.shape[0] == 1:
        array = np.repeat(array, size)
    if array.shape[0] != size:
        raise ParameterError(f"parameter '{name}' has {array.shape[0]} values, expected {size} (or 1)")
    return array


class ArmKinematics:
    """Forward kinematics and the damped-least-squares twist mapping of the simulated arm."""

    def __init__(self, link_lengths, base_height: float) -> None:
        self.links = np.asarray(link_lengths, dtype=np.float64)
        self.base_height = base_height

    def position(self, q: np.ndarray) -> np.ndarray:
        pitch = np.cumsum(q[1:4])  # angles of the three links from vertical
        reach = float(np.sum(self.links * np.sin(pitch)))
        height = self.base_height + float(np.sum(self.links * np.cos(pitch)))
        return np.array([reach * np.cos(q[0]), reach * np.sin(q[0]), height])

    def joint_velocity_for(self, q: np.ndarray, linear: np.ndarray, damping: float = 0.05) -> np.ndarray:
        jacobian = np.zeros((3, 4))
        base = self.position(q)
        for j in range(4):
            shifted = q.copy()
            shifted[j] += 1e-6
            jacobian[:, j] = (self.position(shifted) - base) / 1e-6
        arm = jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + damping ** 2 * np.eye(3), linear)
        velocity = np.zeros_like(q)
        velocity[:4] = arm
        return velocity


class SimHardware(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(graph.SIM_HARDWARE, **node_kwargs)
        self.p = p = as_dict(*declare_settings(self, graph.SIM_HARDWARE))
        self.joint_names = list(p["joint_names"])
        n = len(self.joint_names)
        if n < 4:
            raise ParameterError(f"parameter 'joint_names' needs at least 4 joints, got {n}")
        self.lower = _broadcast(p["position_lower"], n, "position_lower")
        self.upper = _broadcast(p["position_upper"], n, "position_upper")
        self.max_velocity = _broadcast(p["max_velocity"], n, "max_velocity")
        self.q = np.clip(_broadcast(p["initial_positions"], n, "initial_positions"), self.lower, self.upper)
        self.goal = _broadcast(p["goal_joint_positions"], n, "goal_joint_positions")
        if len(p["link_lengths"]) != 3:
            raise ParameterError("parameter 'link_lengths' must have 3 values")
        if len(p["gripper_range"]) != 2 or not p["gripper_range"][0] < p["gripper_range"][1]:
            raise ParameterError("parameter 'gripper_range' must be [closed, open] with closed < open")
        self.kinematics = ArmKinematics(p["link_lengths"], p["base_height"])
        self.qd = np.zeros(n)
        self.velocity_command = np.zeros(n)
        self.twist_command: np.ndarray | None = None  # the active command is the newest one
        self.gripper = float(p["gripper_range"][1])
        self.gripper_target = self.gripper
        self.drift = _broadcast(p["drift_velocity"], n, "drift_velocity")
        self.dt = 1.0 / p["rate_hz"]
        self.last_command = time.monotonic()
        self.timed_out = bool(p["command_timeout_s"])  # nothing commanded yet
        self.counters = {"velocity_commands": 0, "twist_commands": 0, "saturated_commands": 0,
                         "rejected_commands": 0, "limit_stops": 0, "command_timeouts": 0}

        self.joint_pub = self.create_publisher(JointState, p["joint_states_topic"], STATUS_QOS)
        self.pose_pub = self.create_publisher(PoseStamped, p["ee_pose_topic"], STATUS_QOS)
        self.success_pub = self.create_publisher(Bool, p["success_topic"], STATUS_QOS)
        self.create_subscription(Float64MultiArray, p["velocity_command_topic"], self._on_velocity, 10)
        self.create_subscription(TwistStamped, p["twist_command_topic"], self._on_twist, 10)
        self.create_subscription(Float64MultiArray, p["gripper_command_topic"], self._on_gripper, 10)
        self.create_timer(self.dt, self._tick)

    def _on_velocity(self, msg: Float64MultiArray) -> None:
        command = np.asarray(msg.data, dtype=np.float64)
        if command.shape != self.q.shape or not np.all(np.isfinite(command)):
            self.counters["rejected_commands"] += 1  # a real controller refuses these too
            self.get_logger().error(f"rejected velocity command of {command.shape[0]} values (or NaN)")
            return
        self.counters["velocity_commands"] += 1
        self.counters["saturated_commands"] += int(np.any(np.abs(command) > self.max_velocity))
        self.velocity_command = np.clip(command, -self.max_velocity, self.max_velocity)
        self.twist_command = None
        self._commanded()

    def _commanded(self) -> None:
        self.last_command = time.monotonic()
        self.timed_out = False

    def _on_twist(self, msg: TwistStamped) -> None:
        linear = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z])
        if not np.all(np.isfinite(linear)) or (msg.header.frame_id and msg.header.frame_id != self.p["frame_id"]):
            self.counters["rejected_commands"] += 1
            self.get_logger().error(f"rejected twist (frame '{msg.header.frame_id}' or NaN)")
            return
        self.counters["twist_commands"] += 1
        self.twist_command = linear
        self._commanded()

    def _on_gripper(self, msg: Float64MultiArray) -> None:
        if len(msg.data) >= 1 and np.isfinite(msg.data[0]):
            low, high = self.p["gripper_range"]
            self.gripper_target = float(np.clip(msg.data[0], low, high))

    def _check_command_timeout(self) -> None:
        timeout = self.p["command_timeout_s"]
        if timeout and not self.timed_out and time.monotonic() - self.last_command > timeout:
            self.timed_out = True
            moving = bool(np.any(self.velocity_command)) or (self.twist_command is not None
                                                             and bool(np.any(self.twist_command)))
            self.velocity_command = np.zeros_like(self.velocity_command)
            self.twist_command = None
            if moving:
                self.counters["command_timeouts"] += 1
                self.get_logger().warning(f"no command for {timeout} s: stopped (command timeout)")

    def _tick(self) -> None:
        self._check_command_timeout()
        if self.twist_command is not None:
            velocity = self.kinematics.joint_velocity_for(self.q, self.twist_command)
        else:
            velocity = self.velocity_command
        if not self.timed_out:
            velocity = velocity + self.drift  # while commanded, however small the command
        velocity = np.clip(velocity, -self.max_velocity, self.max_velocity)
        target = self.q + velocity * self.dt
        clipped = np.clip(target, self.lower, self.upper)
        if np.any(clipped != target):
            self.counters["limit_stops"] += 1  # the hardware's own hard stop
        self.qd = (clipped - self.q) / self.dt
        self.q = clipped
        step = self.p["gripper_speed"] * self.dt
        self.gripper += float(np.clip(self.gripper_target - self.gripper, -step, step))
        self._publish()

    def _publish(self) -> None:
        now = self.get_clock().now().to_msg()
        state = JointState()
        state.header.stamp = now
        state.name = self.joint_names + ([self.p["gripper_joint"]] if self.p["gripper_joint"] else [])
        state.position = [float(x) for x in self.q] + ([self.gripper] if self.p["gripper_joint"] else [])
        state.velocity = [float(x) for x in self.qd] + ([0.0] if self.p["gripper_joint"] else [])
        self.joint_pub.publish(state)
        pose = PoseStamped()
        pose.header.stamp = now
        pose.header.frame_id = self.p["frame_id"]
        x, y, z = self.kinematics.position(self.q)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = float(x), float(y), float(z)
        pose.pose.orientation.w = 1.0
        self.pose_pub.publish(pose)
        self.success_pub.publish(Bool(data=bool(np.all(np.abs(self.q - self.goal) <= self.p["goal_tolerance"]))))

    def close(self) -> None:
        self.get_logger().info(f"sim_hardware counters: {self.counters}")


def main(args=None) -> int:
    return run_node(SimHardware, args)


if __name__ == "__main__":
    raise SystemExit(main())
