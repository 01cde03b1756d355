"""Real-arm bridge: the sim bridge's contract towards the graph, a robot's ROS 2 drivers
behind it, and a safety layer in between.

Towards the graph (exactly as sim_bridge; both are bridge_protocol.BridgeNode):
Observation on `observation_topic`, Action on `action_topic`, Transition (gap-free `seq`)
on `transition_topic`; `lockstep` waits for each TransitionAck (the arm holds still
meanwhile), `free_running` steps at `control_rate_hz` while the arm keeps moving.

Towards the robot (standard driver interfaces):
  joint_states_topic            sensor_msgs/JointState; `joint_names` selects and orders joints
  command_mode joint_velocity   std_msgs/Float64MultiArray on joint_velocity_command_topic
                                (a ros2_control forward velocity controller)
  command_mode cartesian_velocity  geometry_msgs/TwistStamped on twist_command_topic
                                (MoveIt Servo); the end-effector position for the workspace
                                box comes from geometry_msgs/PoseStamped on ee_pose_topic
  gripper_command_topic         std_msgs/Float64MultiArray or Float64 (opening, m)

Observation (float32), in this order:
  joint positions [n] (rad), joint velocities [n] (rad/s),
  gripper opening [1] in [-1, 1] (only with a gripper; measured from `gripper_joint`
  in JointState, else the last command), end-effector position [3] (m, only when
  `ee_pose_topic` is set). End-effector orientation / TF lookups are not included.
Action (policy units, each in [-1, 1]):
  joint_velocity:     n joint velocities (x joint_action_scale rad/s) [+ gripper]
  cartesian_velocity: 3 linear (x linear_action_scale m/s) [+ 3 angular if
                      cartesian_angular] [+ gripper]; gripper -1 closed .. +1 open.
The transition records the action actually commanded after the safety filter.

Safety (porl_ros.core.safety): speed clamp, action-rate limit, joint position limits or
workspace box, a watchdog (zero velocity when actions or joint states stop arriving for
`watchdog_timeout_periods` control periods, checked `watchdog_checks_per_period` times
per period) and an emergency stop (std_srvs/SetBool: true holds the arm at zero velocity
and truncates the episode until false; release drives it home and starts a new episode).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.duration import Duration
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray
from std_srvs.srv import SetBool

from porl_ros import graph
from porl_ros.core import safety
from porl_ros.core.checkpoint import CheckpointError, load_actor
from porl_ros.core.rollout import EpisodeBook, StepRecord
from porl_ros.nodes.bridge_protocol import BridgeNode
from porl_ros.nodes.diagnostics import Health, NodeDiagnostics
from porl_ros.nodes.params import ParameterError, run_node
from porl_ros.nodes.qos import STATUS_QOS
from porl_ros.nodes.settings import CARTESIAN_VELOCITY
from porl_ros.rewards import checked_call, load_reward_function
from porl_ros_interfaces.msg import Action

# What the bridge is doing; the watchdog needs different inputs in each.
WAITING_FOR_PEERS = "waiting_for_peers"
RESETTING = "resetting"  # driving to the home pose
AWAITING_ACTION = "awaiting_action"  # observation published
EXECUTING = "executing"  # an action is commanded; the step ends at a control tick
AWAITING_ACK = "awaiting_ack"  # lockstep: transition published, arm held still
EMERGENCY_STOPPED = "emergency_stopped"


class ArmBridge(BridgeNode):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(graph.ARM_BRIDGE, **node_kwargs)
        p = self.p
        self.cartesian = p["command_mode"] == CARTESIAN_VELOCITY
        self.period = 1.0 / p["control_rate_hz"]
        self.joint_names = list(p["joint_names"])
        n = self.n_joints = len(self.joint_names)
        if n == 0 or len(set(self.joint_names)) != n:
            raise ParameterError(f"parameter 'joint_names' must list distinct joints, got {self.joint_names}")
        self._configure_limits()
        self.has_gripper = bool(p["gripper_command_topic"])
        self.uses_pose = bool(p["ee_pose_topic"])
        if self.cartesian and not self.uses_pose:
            raise ParameterError("parameter 'ee_pose_topic' is required in cartesian_velocity mode "
                                 "(the workspace box needs the end-effector position)")
        gripper_range = list(p["gripper_range"])
        if len(gripper_range) != 2 or not gripper_range[0] < gripper_range[1]:
            raise ParameterError(f"parameter 'gripper_range' must be [closed, open], got {gripper_range}")
        self.gripper_range = gripper_range
        self.motion_dim = (6 if p["cartesian_angular"] else 3) if self.cartesian else n
        self.act_dim = self.motion_dim + int(self.has_gripper)
        self.obs_dim = 2 * n + int(self.has_gripper) + (3 if self.uses_pose else 0)
        if p["checkpoint"]:
            try:
                load_actor(p["checkpoint"], expect={"obs_dim": self.obs_dim, "act_dim": self.act_dim})
            except CheckpointError as e:
                raise ParameterError(f"checkpoint does not fit this arm's observation ({self.obs_dim}) / "
                                     f"action ({self.act_dim}) layout: {e}") from None
        if not p["reward_function"] and not p["success_topic"]:
            raise ParameterError("set parameter 'reward_function' ('module:function') or 'success_topic'")
        self.reward_function = None
        if p["reward_function"]:
            try:
                self.reward_function = load_reward_function(p["reward_function"], p["reward_kwargs"],
                                                            self.obs_dim, self.act_dim)
            except ValueError as e:
                raise ParameterError(f"parameter 'reward_function': {e}") from None

        self.monitor = safety.SafetyMonitor(safety.Watchdog(p["watchdog_timeout_periods"] * self.period))
        # The watchdog's thread commands too: a command is filtered against the last one sent and
        # sent under this lock, so a watchdog zero cannot slip between (0 -> full speed in one step).
        self.command_lock = threading.RLock()
        self.estop_file = Path(p["emergency_stop_file"]).expanduser() if p["emergency_stop_file"] else None
        latched = self.estop_file is not None and self.estop_file.exists()
        if latched:
            self.monitor.engage_emergency_stop()
        self.activity = WAITING_FOR_PEERS
        self._setup_graph(EpisodeBook(self.p["first_seq"], self.p["first_episode"]))
        self.episode_over = False  # lockstep: reset after the pending ack
        # Latest driver state.
        self.positions: np.ndarray | None = None
        self.velocities = np.zeros(n)
        self.measured_gripper: float | None = None
        self.ee_position: np.ndarray | None = None
        self.success_signal = False
        # What is commanded now (velocity in joint mode, [linear, angular] in cartesian mode).
        self.command = np.zeros(6 if self.cartesian else n)
        self.gripper_action = float(p["home_gripper"])
        self.state: np.ndarray | None = None  # observation of the step in progress
        self.closing = False
        self.executing: tuple[np.ndarray, Action, float] | None = None
        self.reset_started = 0.0
        self.counters = {"rejected_actions": 0, "stale_actions": 0, "clamped_actions": 0, "rate_limited": 0,
                         "position_limited": 0, "workspace_limited": 0, "rejected_joint_states": 0,
                         "rejected_poses": 0, "watchdog_trips": 0, "emergency_stops": 0, "reset_timeouts": 0,
                         "observation_resends": 0, "transition_resends": 0, "episodes": 0, "successes": 0}

        if self.cartesian:
            self.twist_pub = self.create_publisher(TwistStamped, p["twist_command_topic"], 10)
        else:
            self.velocity_pub = self.create_publisher(Float64MultiArray, p["joint_velocity_command_topic"], 10)
        if self.has_gripper:
            gripper_type = Float64 if p["gripper_command_type"] == "float64" else Float64MultiArray
            self.gripper_pub = self.create_publisher(gripper_type, p["gripper_command_topic"], 10)
        # Best effort subscribers match both reliable and best-effort driver publishers.
        self.create_subscription(JointState, p["joint_states_topic"], self._on_joint_state, STATUS_QOS)
        if self.uses_pose:
            self.create_subscription(PoseStamped, p["ee_pose_topic"], self._on_pose, STATUS_QOS)
        if p["success_topic"]:
            self.create_subscription(Bool, p["success_topic"], self._on_success, STATUS_QOS)
        self.create_service(SetBool, p["emergency_stop_service"], self._on_emergency_stop)
        self.create_timer(self.period, self._control_tick)
        # The watchdog has a thread of its own, outside the executor: a slow reward function or
        # any other busy callback cannot delay the stop. (A plain thread, not a multi-threaded
        # executor: rclpy's Python executors added up to 300 ms of jitter to every callback.)
        self.watchdog_thread = threading.Thread(target=self._watchdog_loop, name="arm_bridge_watchdog",
                                                args=(self.period / p["watchdog_checks_per_period"],),
                                                daemon=True)
        self.watchdog_thread.start()
        if latched:
            self._stop()
            self.get_logger().warning(f"EMERGENCY STOP latched from before this start ({self.estop_file} "
                                      f"exists): the arm is held until it is released (SetBool false on "
                                      f"{p['emergency_stop_service']})")
        elif self.estop_file is None:
            self.get_logger().info("parameter 'emergency_stop_file' is empty: an emergency stop is not latched "
                                   "across restarts of this node")
        self.reported_counters = dict(self.counters)
        self.diagnostics = NodeDiagnostics(self, self._health, p["diagnostics_rate_hz"], hardware_id=p["env_id"])
        self.get_logger().info(
            f"{p['env_id']}: {p['command_mode']}, {n} joints, obs {self.obs_dim}, act {self.act_dim}, "
            f"{p['timing_mode']} at {p['control_rate_hz']} Hz, watchdog {self.monitor.watchdog.timeout_s * 1e3:.0f} ms")

    def _configure_limits(self) -> None:
        p, n = self.p, self.n_joints
        try:
            self.joint_limits = safety.JointLimits.build(
                n, p["joint_position_lower"], p["joint_position_upper"], p["max_joint_velocity"],
                p["max_joint_velocity_change"], p["joint_position_margin"], self.period)
            self.joint_scale = safety._vector(p["joint_action_scale"], n, "joint_action_scale")
            self.home_joints = safety._vector(p["home_joint_positions"], n, "home_joint_positions")
            self.cartesian_limits = safety.CartesianLimits.build(
                p["max_linear_speed"], p["max_angular_speed"], p["max_linear_change"], p["max_angular_change"],
                p["workspace_min"], p["workspace_max"], p["workspace_margin"], self.period)
            self.home_ee = safety._vector(p["home_ee_position"], 3, "home_ee_position")
        except ValueError as e:
            raise ParameterError(f"parameter {e}") from None
        if np.any(self.joint_scale <= 0):
            raise ParameterError("parameter 'joint_action_scale' must be > 0")
        lower = self.joint_limits.position_lower + self.joint_limits.position_margin
        upper = self.joint_limits.position_upper - self.joint_limits.position_margin
        if np.any(self.home_joints < lower) or np.any(self.home_joints > upper):
            raise ParameterError("parameter 'home_joint_positions' must lie inside the joint limits less "
                                 "their margin")
        box = self.cartesian_limits
        if np.any(self.home_ee < box.workspace_low + box.workspace_margin) or \
                np.any(self.home_ee > box.workspace_high - box.workspace_margin):
            raise ParameterError("parameter 'home_ee_position' must lie inside the workspace box less its margin")

    def _health(self) -> Health:
        values = {"env_id": self.p["env_id"], "activity": self.activity, "safety_state": self.monitor.state,
                  "episode": self.book.episode, "step": self.book.step, "env_steps": self.book.seq,
                  "commanded_speed": float(np.max(np.abs(self.command))) if self.command.size else 0.0,
                  **self.counters}
        health = Health(values=values, message=f"{self.activity} ({self.monitor.state})")
        if self.monitor.state == safety.EMERGENCY_STOP:
            health.warn("emergency stop engaged")
        elif self.monitor.state == safety.WATCHDOG_STOP:
            health.warn(f"watchdog stop: no fresh {', '.join(self.monitor.stale_inputs)}")
        new = {k: v - self.reported_counters.get(k, 0) for k, v in self.counters.items()
               if k in ("rejected_actions", "rejected_joint_states", "rejected_poses")}
        self.reported_counters = dict(self.counters)
        for key, count in new.items():
            if count > 0:
                health.warn(f"{count} {key.replace('_', ' ')} since the last report")
        return health

    # ------------------------------------------------------------------ driver inputs
    def _on_joint_state(self, msg: JointState) -> None:
        index = {name: i for i, name in enumerate(msg.name)}
        missing = [name for name in self.joint_names if name not in index]
        try:
            if missing:
                raise ValueError(f"joint(s) {missing} missing")
            order = [index[name] for name in self.joint_names]
            positions = safety.check_finite([msg.position[i] for i in order], self.n_joints, "position")
            velocities = (safety.check_finite([msg.velocity[i] for i in order], self.n_joints, "velocity")
                          if len(msg.velocity) == len(msg.name) else np.zeros(self.n_joints))
            gripper = None
            if self.p["gripper_joint"]:
                if self.p["gripper_joint"] not in index:
                    raise ValueError(f"gripper joint '{self.p['gripper_joint']}' missing")
                gripper = float(safety.check_finite([msg.position[index[self.p['gripper_joint']]]], 1, "gripper")[0])
        except (ValueError, IndexError) as e:
            self.counters["rejected_joint_states"] += 1
            self.get_logger().error(f"rejected JointState: {e}", throttle_duration_sec=2.0)
            return  # stays stale: the watchdog stops the arm if no good one follows
        self.positions, self.velocities, self.measured_gripper = positions, velocities, gripper
        self.monitor.watchdog.feed("joint_state", time.monotonic())

    def _on_pose(self, msg: PoseStamped) -> None:
        frame = self.p["command_frame_id"]
        position = np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])
        if (frame and msg.header.frame_id != frame) or not np.all(np.isfinite(position)):
            self.counters["rejected_poses"] += 1
            self.get_logger().error(f"rejected end-effector pose in frame '{msg.header.frame_id}' (expected "
                                    f"'{frame}') or with NaN", throttle_duration_sec=2.0)
            return
        self.ee_position = position
        self.monitor.watchdog.feed("ee_pose", time.monotonic())

    def _on_success(self, msg: Bool) -> None:
        self.success_signal = bool(msg.data)

    # ------------------------------------------------------------------ observation and commands
    def _observe(self) -> np.ndarray:
        parts = [self.positions, self.velocities]
        if self.has_gripper:
            if self.measured_gripper is not None:
                low, high = self.gripper_range
                parts.append([2.0 * (self.measured_gripper - low) / (high - low) - 1.0])
            else:
                parts.append([self.gripper_action])
        if self.uses_pose:
            parts.append(self.ee_position)
        return np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1) for x in parts]).astype(np.float32)

    def _filter(self, command: np.ndarray) -> tuple[np.ndarray, safety.FilterReport]:
        """The safe version of a motion command (raises ValueError on bad input)."""
        if self.cartesian:
            linear, angular, report = safety.filter_twist(command[:3], command[3:], self.ee_position,
                                                          self.command[:3], self.command[3:], self.cartesian_limits)
            return np.concatenate([linear, angular]), report
        return safety.filter_joint_velocity(command, self.positions, self.command, self.joint_limits)

    def _send_filtered(self, command: np.ndarray) -> None:
        with self.command_lock:
            self._send_command(self._filter(command)[0])

    def _send_command(self, command: np.ndarray) -> None:
        with self.command_lock:
            if self.closing and np.any(command):
                return  # stopping: nothing but zero goes out any more
            self._publish_command(command)

    def _publish_command(self, command: np.ndarray) -> None:
        self.command = np.asarray(command, dtype=np.float64)
        if self.cartesian:
            msg = TwistStamped()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.header.frame_id = self.p["command_frame_id"]
            t = msg.twist
            t.linear.x, t.linear.y, t.linear.z = (float(v) for v in self.command[:3])
            t.angular.x, t.angular.y, t.angular.z = (float(v) for v in self.command[3:])
            self.twist_pub.publish(msg)
        else:
            self.velocity_pub.publish(Float64MultiArray(data=[float(v) for v in self.command]))

    def _stop(self) -> None:
        self._send_command(np.zeros_like(self.command))

    def _send_gripper(self, action: float) -> None:
        if not self.has_gripper:
            return
        self.gripper_action = float(np.clip(action, -1.0, 1.0))
        low, high = self.gripper_range
        opening = low + (self.gripper_action + 1.0) / 2.0 * (high - low)
        if self.p["gripper_command_type"] == "float64":
            self.gripper_pub.publish(Float64(data=opening))
        else:
            self.gripper_pub.publish(Float64MultiArray(data=[opening]))

    def _motion_command(self, action: np.ndarray) -> np.ndarray:
        """Policy units -> physical velocity command (before the safety filter)."""
        motion = action[: self.motion_dim].astype(np.float64)
        if not self.cartesian:
            return motion * self.joint_scale
        command = np.zeros(6)
        command[:3] = motion[:3] * self.p["linear_action_scale"]
        if self.p["cartesian_angular"]:
            command[3:] = motion[3:6] * self.p["angular_action_scale"]
        return command

    def _executed_action(self, command: np.ndarray, gripper: float) -> np.ndarray:
        """Physical command -> policy units: what the transition records."""
        if self.cartesian:
            motion = command[:3] / self.p["linear_action_scale"]
            if self.p["cartesian_angular"]:
                motion = np.concatenate([motion, command[3:] / self.p["angular_action_scale"]])
        else:
            motion = command / self.joint_scale
        parts = [motion] + ([[gripper]] if self.has_gripper else [])
        return np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32)

    def _required_inputs(self) -> tuple[str, ...]:
        """Inputs that must be fresh for the arm to keep moving in the current activity."""
        if self.activity not in (RESETTING, AWAITING_ACTION, EXECUTING):
            return ()
        required = ("joint_state",) + (("ee_pose",) if self.uses_pose else ())
        if self.activity != RESETTING and np.any(self.command != 0):
            required += ("action",)
        return required

    # ------------------------------------------------------------------ graph inputs
    def _on_action(self, msg: Action) -> None:
        if self.finished:
            return
        action = self._accept_action(msg, self.act_dim, waiting=self.activity == AWAITING_ACTION)
        if action is None:
            return
        now = time.monotonic()
        self.monitor.watchdog.feed("action", now)
        if self.monitor.update(now, self._required_inputs()) == safety.EMERGENCY_STOP:
            return
        clipped = np.clip(action, -1.0, 1.0)
        self.counters["clamped_actions"] += int(np.any(clipped != action))
        with self.command_lock:
            try:
                command, report = self._filter(self._motion_command(clipped))
            except ValueError as e:  # e.g. no end-effector pose yet
                self.counters["rejected_actions"] += 1
                self.get_logger().error(f"cannot execute action: {e}")
                return
            self._count(report)
            if not self.monitor.motion_allowed:
                command = np.zeros_like(command)  # a stale joint state or pose: hold still
            self._send_command(command)
        gripper = float(clipped[-1]) if self.has_gripper else 0.0
        self._send_gripper(gripper)
        self.executing = (self._executed_action(command, gripper), msg, now)
        self.activity = EXECUTING

    def _count(self, report: safety.FilterReport) -> None:
        self.counters["clamped_actions"] += int(report.velocity_clamped)
        self.counters["rate_limited"] += int(report.rate_limited)
        self.counters["position_limited"] += int(report.position_limited)
        self.counters["workspace_limited"] += int(report.workspace_limited)

    def _after_ack(self) -> None:
        if self.activity == AWAITING_ACK and not self.finished:
            if self.episode_over:
                self._start_reset()
            else:
                self._publish_observation()

    def _on_emergency_stop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data:
            engaged_now = self.monitor.state != safety.EMERGENCY_STOP
            self.monitor.engage_emergency_stop()
            self._stop()
            self._write_latch()
            if engaged_now:
                self.counters["emergency_stops"] += 1
                self.get_logger().warning("EMERGENCY STOP engaged: arm held at zero velocity")
                self._truncate_for_emergency_stop()
            response.success, response.message = True, "emergency stop engaged; call with false to release"
        else:
            if self.monitor.state != safety.EMERGENCY_STOP:
                self._remove_latch()
                response.success, response.message = True, "emergency stop was not engaged"
                return response
            try:
                self._remove_latch()
            except OSError as e:
                response.success, response.message = False, f"cannot remove the latch file {self.estop_file}: {e}"
                return response
            self.monitor.release_emergency_stop()
            self.get_logger().warning("emergency stop released: driving home, then a new episode")
            if not self.finished and self.activity == EMERGENCY_STOPPED:
                self._start_reset()
            response.success, response.message = True, "released"
        return response

    def _write_latch(self) -> None:
        if self.estop_file is None:
            return
        try:
            self.estop_file.parent.mkdir(parents=True, exist_ok=True)
            self.estop_file.write_text(f"emergency stop engaged at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; "
                                       f"release with SetBool false on {self.p['emergency_stop_service']}\n")
        except OSError as e:
            self.get_logger().error(f"could not latch the emergency stop in {self.estop_file}: {e} (it holds "
                                    f"while this process runs, but not across a restart)")

    def _remove_latch(self) -> None:
        if self.estop_file is not None:
            self.estop_file.unlink(missing_ok=True)

    def _truncate_for_emergency_stop(self) -> None:
        if self.activity == EXECUTING:
            # The step in progress ends here, as a truncated transition (no gap in seq).
            self._complete_step(force_truncate=True)
        elif self.activity in (AWAITING_ACTION, AWAITING_ACK) and not self.episode_over:
            self._episode_ended(self.book.end_episode())  # its last transition is already out
        self.executing = None
        self.episode_over = False
        if self.activity != WAITING_FOR_PEERS:
            self.activity = EMERGENCY_STOPPED

    # ------------------------------------------------------------------ stepping
    def _publish_observation(self) -> None:
        self.state = self._observe()
        self.activity = AWAITING_ACTION
        super()._publish_observation()

    def _control_tick(self) -> None:
        if self.finished:
            return
        now = time.monotonic()
        state = self.monitor.update(now, self._required_inputs())
        if self.activity == RESETTING:
            self._reset_tick(now)
        elif self.activity == EXECUTING and now - self.executing[2] >= 0.5 * self.period:
            if not self.monitor.watchdog.stale(now, ("joint_state",) + (("ee_pose",) if self.uses_pose else ())):
                self._complete_step()
        if self.activity in (AWAITING_ACTION, EXECUTING) and state == safety.RUNNING and (
                np.any(self.command != 0) or self._outside_box()):
            # Stream the held command (Servo needs a stream), re-filtered against where the
            # arm is now: the position / workspace rules can only slow it, or pull it back in.
            self._send_filtered(self.command)
        elif self.activity != WAITING_FOR_PEERS and (state != safety.RUNNING or self.activity not in
                                                     (AWAITING_ACTION, EXECUTING, RESETTING)):
            self._stop()

    def _outside_box(self) -> bool:
        """Cartesian mode: the end effector drifted into the margin or out of the workspace box."""
        if not self.cartesian or self.ee_position is None:
            return False
        box = self.cartesian_limits
        return bool(np.any(self.ee_position > box.workspace_high - box.workspace_margin)
                    or np.any(self.ee_position < box.workspace_low + box.workspace_margin))

    def _watchdog_loop(self, interval_s: float) -> None:
        next_check = time.monotonic()
        while not self.finished:
            next_check += interval_s
            time.sleep(max(0.0, next_check - time.monotonic()))
            try:
                self._watchdog_tick()
            except Exception as e:  # e.g. the context went down under it at shutdown
                if not self.finished:
                    self.get_logger().error(f"watchdog check failed: {e}")

    def _watchdog_tick(self) -> None:
        if self.activity == WAITING_FOR_PEERS or self.finished:
            return
        before = self.monitor.state
        state = self.monitor.update(time.monotonic(), self._required_inputs())
        if state == safety.WATCHDOG_STOP and before == safety.RUNNING:
            self.counters["watchdog_trips"] += 1
            self._stop()
            self.get_logger().warning(f"watchdog: no fresh {', '.join(self.monitor.stale_inputs)} within "
                                      f"{self.monitor.watchdog.timeout_s * 1e3:.0f} ms: zero velocity",
                                      throttle_duration_sec=2.0)

    def _complete_step(self, force_truncate: bool = False) -> None:
        executed, action_msg, _ = self.executing
        self.executing = None
        next_state = self._observe()
        if self.reward_function is not None:
            try:
                reward, success = checked_call(self.reward_function, self.state, executed, next_state)
            except Exception as e:  # a user's function failing mid-run must not move the arm on
                self.get_logger().fatal(f"reward function failed: {e}; stopping")
                self._stop()
                self.exit_code = 1
                self._finish()
                return
            if self.p["success_topic"]:
                success = self.success_signal
        else:
            success = self.success_signal
            reward = 1.0 if success else 0.0
        terminated = success and self.p["terminate_on_success"]
        truncated = not terminated and (force_truncate or self.book.step + 1 >= self.p["max_episode_steps"])
        seq, episode, step = self.book.record(reward, success)
        record = StepRecord(seq, episode, step, self.state, executed, float(reward), next_state, bool(terminated),
                            bool(truncated), bool(success))
        self.episode_over = terminated or truncated
        if self.episode_over or self.lockstep:
            self._stop()  # lockstep holds still while the learner catches up
        self._send_transition(action_msg, record)
        summary = self.book.advance(self.episode_over)
        if summary is not None:
            self._episode_ended(summary)
        if self._reached_max_env_steps():
            return
        if force_truncate:
            return
        if self.lockstep:
            self.activity = AWAITING_ACK
        elif self.episode_over:
            self._start_reset()
        else:
            self._publish_observation()

    def _start_reset(self) -> None:
        self.episode_over = False
        self.activity = RESETTING
        self.reset_started = time.monotonic()
        self._send_gripper(self.p["home_gripper"])

    def _reset_tick(self, now: float) -> None:
        if self.monitor.state != safety.RUNNING:
            return  # stale joint states / pose: the watchdog holds the arm; resume when fresh
        if self.cartesian:
            error = self.home_ee - self.ee_position
            target = np.concatenate([safety.proportional_step(self.home_ee, self.ee_position, self.p["reset_gain"],
                                                              self.cartesian_limits.max_linear_speed), np.zeros(3)])
        else:
            error = self.home_joints - self.positions
            target = safety.proportional_step(self.home_joints, self.positions, self.p["reset_gain"],
                                              self.joint_limits.max_velocity)
        if np.max(np.abs(error)) <= self.p["reset_tolerance"]:
            self._begin_episode()
            return
        if now - self.reset_started > self.p["reset_timeout_s"]:
            self.counters["reset_timeouts"] += 1
            self.get_logger().error(f"reset did not reach home within {self.p['reset_timeout_s']} s (largest "
                                    f"error {np.max(np.abs(error)):.3f}); starting the episode from here")
            self._begin_episode()
            return
        self._send_filtered(target)

    def _begin_episode(self) -> None:
        self._stop()
        if self.awaiting_ack:
            self.activity = AWAITING_ACK  # (after an emergency stop mid-lockstep) the ack comes first
        else:
            self._publish_observation()

    def _finish(self) -> None:
        self._stop()
        self.finished = True

    # ------------------------------------------------------------------ what BridgeNode asks of a bridge
    @property
    def started(self) -> bool:
        return self.activity != WAITING_FOR_PEERS

    def _peers_missing(self) -> list[str]:
        missing = super()._peers_missing()
        if self.positions is None:
            missing.append(f"a JointState with {self.joint_names} on {self.p['joint_states_topic']}")
        if self.uses_pose and self.ee_position is None:
            missing.append(f"a pose on {self.p['ee_pose_topic']}")
        return missing

    def _first_step(self) -> None:
        if self.monitor.state == safety.EMERGENCY_STOP:
            self.activity = EMERGENCY_STOPPED
            return
        self.get_logger().info("driving to the home pose")
        self._start_reset()

    def _awaiting_action(self) -> bool:
        return self.activity == AWAITING_ACTION

    def close(self) -> None:
        """Leave the arm still whatever ended the node (a signal, the run's end, an error):
        called while the context is up, so the zero command reaches the driver."""
        self.finished = True
        with self.command_lock:
            self.closing = True
        try:
            self._stop()
            publisher = self.twist_pub if self.cartesian else self.velocity_pub
            if not publisher.wait_for_all_acked(Duration(seconds=1.0)):
                self.get_logger().warning("the final zero-velocity command was not acknowledged by every "
                                          "subscriber within 1 s (it may still have arrived)")
            else:
                self.get_logger().info("final zero-velocity command sent and acknowledged")
        except Exception as e:  # the context may already be shut down
            self.get_logger().error(f"could not send the final zero-velocity command: {e}")
        self.get_logger().info(f"arm_bridge counters: {self.counters}")


def main(args=None) -> int:
    return run_node(ArmBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
