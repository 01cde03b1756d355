"""Simulator bridge: owns an environment back-end and runs its episodes.

Publishes each Observation, executes the Action that answers it, publishes the
Transition (with a gap-free `seq`), resets at episode ends. Two timing modes:
  lockstep      after each transition, wait for the learner's TransitionAck before the
                next observation: the UTD ratio is exact and a seeded run reproducible.
  free_running  step at `control_rate_hz` as a real robot would; the learner keeps up as
                it can and reports its effective UTD.
Deadlines instead of silent hangs: an observation unanswered for `action_timeout_s` and
a transition unacknowledged for `ack_timeout_s` are logged and sent again.
Monitoring: rviz markers (end effector, goal, the executed action colored exploratory vs
policy, a success flash) and sensor_msgs/JointState at `viz_rate_hz`, independent of the
step rate, and a DiagnosticArray on /diagnostics.
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from visualization_msgs.msg import MarkerArray

from porl_ros.core.checkpoint import CheckpointError, load_actor
from porl_ros.core.phases import PHASES
from porl_ros.envs.registry import make_env
from porl_ros.nodes.conversions import from_float32_field, to_float32_field
from porl_ros.nodes.diagnostics import DIAGNOSTICS_RATE_PARAM, Health, NodeDiagnostics, RateMeter
from porl_ros.nodes.params import (Param, ParameterError, declare_params, non_negative, one_of, positive,
                                   run_node)
from porl_ros.nodes.qos import STATUS_QOS, STREAM_QOS
from porl_ros.nodes.visualization import VIZ_QOS, build_markers
from porl_ros_interfaces.msg import Action, Observation, TrainingStatus, Transition, TransitionAck

LOCKSTEP, FREE_RUNNING = "lockstep", "free_running"
DONE = "done"  # phase the learner reports once it has finished the run

PARAMS = [
    Param("env_id", "metaworld/push-v3", "Environment back-end and task, e.g. 'metaworld/push-v3', "
          "'gymnasium/AdroitHandDoor-v1', 'rlbench/reach_target'."),
    Param("max_episode_steps", 200, "Episode length (time-limit truncation).", **positive()),
    Param("seed", 0, "Seed of episode k is seed + k (reproducible task variations).", **non_negative()),
    Param("terminate_on_success", False, "End an episode (terminated) at the first success. Off by default "
          "for training: with dense rewards a terminal success state is worth 0 to the critic, which "
          "teaches it that succeeding is bad; episodes then end by the time limit."),
    Param("bridge_id", 0, "This bridge's id in transitions (several bridges can feed one learner).",
          **non_negative()),
    Param("checkpoint", "", "Actor checkpoint: its observation/action sizes are checked against "
          "the environment at start (empty: no check)."),
    Param("timing_mode", LOCKSTEP, "'lockstep' (simulators) or 'free_running' (real robots).",
          **one_of(LOCKSTEP, FREE_RUNNING)),
    Param("control_rate_hz", 20.0, "Step rate in free_running mode.", **positive()),
    Param("action_timeout_s", 10.0, "Re-publish an observation unanswered for this long.", **positive()),
    Param("ack_timeout_s", 10.0, "Lockstep: re-publish a transition unacknowledged for this long.",
          **positive()),
    Param("max_env_steps", 0, "Stop after this many steps (0: until the learner reports done).",
          **non_negative()),
    Param("min_transition_subscribers", 1, "Wait until this many subscribers (the learner, plus e.g. a "
          "recorder) are matched on the transition topic before the first step.", **positive()),
    Param("frame_id", "world", "frame_id of published headers, markers and joint states."),
    Param("viz_rate_hz", 10.0, "Rate of rviz markers and joint states (0: none); a timer, not every step, "
          "so a fast simulator pays little for them.", **non_negative()),
    Param("viz_arrow_scale", 0.1, "Length in metres of the action arrow per unit of action.", **positive()),
    Param("markers_topic", "/porl/markers", "visualization_msgs/MarkerArray for rviz (one topic for all "
          "bridges; marker namespaces carry the bridge id)."),
    Param("joint_states_topic", "porl/joint_states", "sensor_msgs/JointState, when the back-end has joints."),
    DIAGNOSTICS_RATE_PARAM,
    Param("observation_topic", "porl/observation", "Observations to the controller."),
    Param("action_topic", "porl/action", "Actions from the controller."),
    Param("transition_topic", "/porl/transition", "Transitions to the learner."),
    Param("ack_topic", "/porl/transition_ack", "Lockstep acknowledgements from the learner."),
    Param("status_topic", "/porl/status", "Learner status (its phase, in free_running mode)."),
]


class SimBridge(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("sim_bridge", **node_kwargs)
        self.p = p = declare_params(self, PARAMS)
        try:
            self.env = make_env(p["env_id"], max_episode_steps=p["max_episode_steps"], seed=p["seed"],
                                terminate_on_success=p["terminate_on_success"])
        except (ValueError, KeyError, ImportError) as e:
            raise ParameterError(f"parameter 'env_id' = {p['env_id']!r}: {e}") from None
        self.spec = self.env.spec
        if p["checkpoint"]:
            try:
                load_actor(p["checkpoint"], expect={"obs_dim": self.spec.obs_dim, "act_dim": self.spec.act_dim})
            except CheckpointError as e:
                raise ParameterError(f"checkpoint does not fit env '{p['env_id']}': {e}") from None
        self.lockstep = p["timing_mode"] == LOCKSTEP
        self.finished = False
        self.exit_code = 0

        self.obs_pub = self.create_publisher(Observation, p["observation_topic"], STREAM_QOS)
        self.transition_pub = self.create_publisher(Transition, p["transition_topic"], STREAM_QOS)
        self.create_subscription(Action, p["action_topic"], self._on_action, STREAM_QOS)
        self.create_subscription(TransitionAck, p["ack_topic"], self._on_ack, STREAM_QOS)
        self.create_subscription(TrainingStatus, p["status_topic"], self._on_status, STATUS_QOS)

        self.episode = 0
        self.step_in_episode = 0
        self.seq = 0  # seq of the next transition
        self.phase = ""
        self.policy_version = 0  # newest version the learner has announced
        self.episode_return = 0.0
        self.episode_success = False
        self.last_transition: Transition | None = None
        self.awaiting_ack = False
        self.pending_action: np.ndarray | None = None
        self.counters = {"rejected_actions": 0, "stale_actions": 0, "observation_resends": 0,
                         "transition_resends": 0, "episodes": 0, "successes": 0}
        self.state = self.env.reset(seed=p["seed"])
        self.last_publish = time.monotonic()
        self._setup_monitoring()
        self.get_logger().info(f"{p['env_id']}: obs {self.spec.obs_dim}, act {self.spec.act_dim}, "
                               f"{p['timing_mode']}, episodes of {p['max_episode_steps']} steps")
        self.started = False
        self.create_timer(0.2, self._check_deadlines)
        if not self.lockstep:
            self.create_timer(1.0 / p["control_rate_hz"], self._control_tick)

    # ------------------------------------------------------------------ monitoring
    def _setup_monitoring(self) -> None:
        p = self.p
        self.step_meter = RateMeter()
        self.action_meter = RateMeter()
        self.viz_action: np.ndarray | None = None
        self.viz_exploratory = False
        self.success_flash_pending = False
        self.rejected_actions_reported = 0
        self.markers_pub = self.joint_pub = None
        if p["viz_rate_hz"] > 0:
            self.markers_pub = self.create_publisher(MarkerArray, p["markers_topic"], VIZ_QOS)
            if self.spec.joint_names:
                self.joint_pub = self.create_publisher(JointState, p["joint_states_topic"], VIZ_QOS)
            self.create_timer(1.0 / p["viz_rate_hz"], self._publish_visualization)
        self.diagnostics = NodeDiagnostics(self, self._health, p["diagnostics_rate_hz"], hardware_id=p["env_id"])

    def _publish_visualization(self) -> None:
        stamp = self.get_clock().now().to_msg()
        frame = self.p["frame_id"]
        text = f"bridge {self.p['bridge_id']}  episode {self.episode}  step {self.step_in_episode}  {self.phase}"
        self.markers_pub.publish(build_markers(
            frame, stamp, self.env.markers(), prefix=f"bridge_{self.p['bridge_id']}/", action=self.viz_action,
            exploratory=self.viz_exploratory, arrow_scale=self.p["viz_arrow_scale"],
            success_flash=self.success_flash_pending, text=text))
        self.success_flash_pending = False
        if self.joint_pub is not None:
            positions = self.env.joint_positions()
            if positions is not None:
                msg = JointState(name=list(self.spec.joint_names),
                                 position=np.asarray(positions, dtype=np.float64).reshape(-1).tolist())
                msg.header.stamp = stamp
                msg.header.frame_id = frame
                self.joint_pub.publish(msg)

    def _health(self) -> Health:
        c = self.counters
        values = {"env_id": self.p["env_id"], "timing_mode": self.p["timing_mode"], "phase": self.phase,
                  "policy_version": self.policy_version, "episode": self.episode, "step": self.step_in_episode,
                  "env_steps": self.seq, "steps_per_second": self.step_meter.rate(),
                  "actions_per_second": self.action_meter.rate(),
                  "seconds_since_last_action": self.action_meter.age(), **c,
                  "awaiting_ack": self.awaiting_ack, "pending_action": self.pending_action is not None,
                  "observation_subscribers": self.obs_pub.get_subscription_count(),
                  "transition_subscribers": self.transition_pub.get_subscription_count(),
                  "started": self.started, "finished": self.finished}
        health = Health(values=values, message="finished" if self.finished else "stepping")
        if self.finished:
            return health
        if not self.started:
            health.warn("waiting for " + ", ".join(self._peers_missing() or ["the first step"]))
            return health
        waited = time.monotonic() - self.last_publish
        if self.awaiting_ack and waited > self.p["ack_timeout_s"]:
            health.warn(f"no transition ack for {waited:.0f} s (learner down?)")
        elif not self.awaiting_ack and self.pending_action is None and waited > self.p["action_timeout_s"]:
            health.warn(f"no action for {waited:.0f} s (controller or policy server down?)")
        new_rejects = c["rejected_actions"] - self.rejected_actions_reported
        self.rejected_actions_reported = c["rejected_actions"]
        if new_rejects:
            health.warn(f"{new_rejects} invalid action(s) rejected since the last report")
        return health

    def _peers_missing(self) -> list[str]:
        """Which subscribers the first observation and transition would be lost without."""
        missing = []
        if self.obs_pub.get_subscription_count() == 0:
            missing.append(f"a subscriber of {self.obs_pub.topic_name} (exploration controller)")
        matched, wanted = self.transition_pub.get_subscription_count(), self.p["min_transition_subscribers"]
        if matched < wanted:
            missing.append(f"{wanted - matched} more subscriber(s) of {self.transition_pub.topic_name} (learner)")
        return missing

    # ------------------------------------------------------------------ outgoing
    def _publish_observation(self) -> None:
        msg = Observation(bridge_id=self.p["bridge_id"], episode=self.episode, step=self.step_in_episode,
                          required_policy_version=self.policy_version if self.lockstep else 0,
                          phase=self.phase if self.phase in PHASES else "")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.p["frame_id"]
        msg.state = to_float32_field(self.state)
        self.obs_pub.publish(msg)
        self.last_publish = time.monotonic()

    # ------------------------------------------------------------------ incoming
    def _on_action(self, msg: Action) -> None:
        if msg.bridge_id != self.p["bridge_id"]:
            return
        if msg.episode != self.episode or msg.step != self.step_in_episode or self.awaiting_ack:
            self.counters["stale_actions"] += 1  # answers an observation already handled
            return
        try:
            action = from_float32_field(msg.action, self.spec.act_dim, "action.action")
        except ValueError as e:
            self.counters["rejected_actions"] += 1
            self.get_logger().error(f"rejected action for episode {msg.episode} step {msg.step}: {e}")
            return
        # Bounds are enforced here whatever the controller sent (a real arm needs it too).
        action = np.clip(action, self.spec.action_low, self.spec.action_high)
        self.action_meter.tick()
        if self.lockstep:
            self._execute(action, msg)
        else:
            self.pending_action = (action, msg)

    def _on_ack(self, msg: TransitionAck) -> None:
        if msg.bridge_id != self.p["bridge_id"] or not self.awaiting_ack:
            return
        if self.last_transition is None or msg.seq != self.last_transition.seq:
            return
        self.awaiting_ack = False
        self.policy_version = msg.policy_version
        self._set_phase(msg.phase)
        if not self.finished:
            self._publish_observation()

    def _on_status(self, msg: TrainingStatus) -> None:
        if msg.phase == DONE:
            self._set_phase(DONE)  # also in lockstep: the last ack may never come once the learner exits
        elif not self.lockstep:
            self.policy_version = max(self.policy_version, msg.policy_version)
            self._set_phase(msg.phase)

    def _set_phase(self, phase: str) -> None:
        if phase == DONE:
            if not self.finished:
                self.get_logger().info(f"learner reports the run is done; stopping after {self.seq} steps")
            self.finished = True
        elif phase in PHASES and phase != self.phase:
            self.get_logger().info(f"learner phase: {phase}")
            self.phase = phase

    # ------------------------------------------------------------------ stepping
    def _control_tick(self) -> None:
        if self.pending_action is not None and not self.finished:
            action, msg = self.pending_action
            self.pending_action = None
            self._execute(action, msg)

    def _execute(self, action: np.ndarray, action_msg: Action) -> None:
        result = self.env.step(action)
        next_state = np.asarray(result.observation, dtype=np.float32)
        transition = Transition(bridge_id=self.p["bridge_id"], seq=self.seq, episode=self.episode,
                                step=self.step_in_episode, reward=float(result.reward),
                                terminated=bool(result.terminated), truncated=bool(result.truncated),
                                success=bool(result.success), exploratory=action_msg.exploratory,
                                policy_version=action_msg.policy_version)
        transition.header.stamp = self.get_clock().now().to_msg()
        transition.header.frame_id = self.p["frame_id"]
        transition.state = to_float32_field(self.state)
        transition.action = to_float32_field(action)
        transition.next_state = to_float32_field(next_state)
        self.seq += 1
        self.last_transition = transition
        self.awaiting_ack = self.lockstep
        self.episode_return += float(result.reward)
        self.step_meter.tick()
        self.viz_action, self.viz_exploratory = action, bool(action_msg.exploratory)
        if result.success and not self.episode_success:
            self.success_flash_pending = True  # flashes once, when the episode first succeeds
        self.episode_success |= bool(result.success)
        if result.terminated or result.truncated:
            self._end_episode()
        else:
            self.state = next_state
            self.step_in_episode += 1
        self.transition_pub.publish(transition)
        self.last_publish = time.monotonic()
        if self.p["max_env_steps"] and self.seq >= self.p["max_env_steps"]:
            self.get_logger().info(f"reached max_env_steps={self.p['max_env_steps']}")
            self.finished = True
        if not self.lockstep and not self.finished:
            self._publish_observation()

    def _end_episode(self) -> None:
        self.counters["episodes"] += 1
        self.counters["successes"] += int(self.episode_success)
        self.get_logger().info(f"episode {self.episode}: return {self.episode_return:.2f}, "
                               f"success {self.episode_success}", throttle_duration_sec=2.0)
        self.episode += 1
        self.step_in_episode = 0
        self.episode_return = 0.0
        self.episode_success = False
        self.state = self.env.reset(seed=self.p["seed"] + self.episode)

    def _check_deadlines(self) -> None:
        if self.finished:
            return
        if not self.started:
            # Volatile topics drop what is published before the peers are matched: wait.
            missing = self._peers_missing()
            if missing:
                self.get_logger().info(f"waiting for {', '.join(missing)}", throttle_duration_sec=5.0)
                return
            self.started = True
            self._publish_observation()
            return
        waited = time.monotonic() - self.last_publish
        if self.awaiting_ack and waited > self.p["ack_timeout_s"]:
            self.counters["transition_resends"] += 1
            self.get_logger().warning(f"no ack for transition {self.last_transition.seq} in "
                                      f"{self.p['ack_timeout_s']} s (is the learner running?); re-sending")
            self.transition_pub.publish(self.last_transition)
            self.last_publish = time.monotonic()
        elif not self.awaiting_ack and self.pending_action is None and waited > self.p["action_timeout_s"]:
            self.counters["observation_resends"] += 1
            self.get_logger().warning(f"no action for episode {self.episode} step {self.step_in_episode} in "
                                      f"{self.p['action_timeout_s']} s (controller / policy server up?); "
                                      f"re-sending the observation")
            self._publish_observation()

    def close(self) -> None:
        self.env.close()


def main(args=None) -> int:
    return run_node(SimBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
