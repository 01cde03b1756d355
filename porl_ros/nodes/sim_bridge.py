"""Simulator bridge: owns an environment back-end and runs its episodes.

Publishes each Observation, executes the Action that answers it, publishes the
Transition (with a gap-free `seq`), resets at episode ends. Two timing modes:
  lockstep      after each transition, wait for the learner's TransitionAck before the
                next observation: the UTD ratio is exact and a seeded run reproducible.
  free_running  step at `control_rate_hz` as a real robot would; the learner keeps up as
                it can and reports its effective UTD.
Deadlines instead of silent hangs: an observation unanswered for `action_timeout_s` and
a transition unacknowledged for `ack_timeout_s` are logged and sent again.
That graph side (shared with arm_bridge) is bridge_protocol.BridgeNode; this file adds the
environment back-end and monitoring.
Monitoring: rviz markers (end effector, goal, the executed action colored exploratory vs
policy, a success flash) and sensor_msgs/JointState at `viz_rate_hz`, independent of the
step rate, and a DiagnosticArray on /diagnostics.
"""

from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import JointState
from visualization_msgs.msg import MarkerArray

from porl_ros.core.checkpoint import CheckpointError, load_actor
from porl_ros.envs.registry import make_env
from porl_ros.nodes.bridge_protocol import DEADLINE_PARAMS, FREE_RUNNING, LOCKSTEP, TOPIC_PARAMS, BridgeNode
from porl_ros.nodes.diagnostics import DIAGNOSTICS_RATE_PARAM, Health, NodeDiagnostics, RateMeter
from porl_ros.nodes.params import Param, ParameterError, non_negative, one_of, positive, run_node
from porl_ros.nodes.visualization import VIZ_QOS, build_markers
from porl_ros_interfaces.msg import Action

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
    *DEADLINE_PARAMS,
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
    *TOPIC_PARAMS,
]


class SimBridge(BridgeNode):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("sim_bridge", PARAMS, **node_kwargs)
        p = self.p
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
        self._setup_graph()
        self.pending_action: np.ndarray | None = None
        self.counters = {"rejected_actions": 0, "stale_actions": 0, "observation_resends": 0,
                         "transition_resends": 0, "episodes": 0, "successes": 0}
        self.state = self.env.reset(seed=p["seed"])
        self._setup_monitoring()
        self.get_logger().info(f"{p['env_id']}: obs {self.spec.obs_dim}, act {self.spec.act_dim}, "
                               f"{p['timing_mode']}, episodes of {p['max_episode_steps']} steps")
        self.started = False
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
        elif self._awaiting_action() and waited > self.p["action_timeout_s"]:
            health.warn(f"no action for {waited:.0f} s (controller or policy server down?)")
        new_rejects = c["rejected_actions"] - self.rejected_actions_reported
        self.rejected_actions_reported = c["rejected_actions"]
        if new_rejects:
            health.warn(f"{new_rejects} invalid action(s) rejected since the last report")
        return health

    # ------------------------------------------------------------------ incoming
    def _on_action(self, msg: Action) -> None:
        action = self._accept_action(msg, self.spec.act_dim, waiting=not self.awaiting_ack)
        if action is None:
            return
        # Bounds are enforced here whatever the controller sent (a real arm needs it too).
        action = np.clip(action, self.spec.action_low, self.spec.action_high)
        self.action_meter.tick()
        if self.lockstep:
            self._execute(action, msg)
        else:
            self.pending_action = (action, msg)

    def _after_ack(self) -> None:
        if not self.finished:
            self._publish_observation()

    # ------------------------------------------------------------------ stepping
    def _control_tick(self) -> None:
        if self.pending_action is not None and not self.finished:
            action, msg = self.pending_action
            self.pending_action = None
            self._execute(action, msg)

    def _execute(self, action: np.ndarray, action_msg: Action) -> None:
        result = self.env.step(action)
        next_state = np.asarray(result.observation, dtype=np.float32)
        transition = self._new_transition(action_msg, action, next_state, result.reward, result.terminated,
                                          result.truncated, result.success)
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
        self._publish_transition(transition)
        self._reached_max_env_steps()
        if not self.lockstep and not self.finished:
            self._publish_observation()

    def _end_episode(self) -> None:
        super()._end_episode()
        self.state = self.env.reset(seed=self.p["seed"] + self.episode)

    # ------------------------------------------------------------------ what BridgeNode asks of a bridge
    def _first_step(self) -> None:
        self.started = True
        self._publish_observation()

    def _awaiting_action(self) -> bool:
        return not self.awaiting_ack and self.pending_action is None

    def close(self) -> None:
        self.env.close()


def main(args=None) -> int:
    return run_node(SimBridge, args)


if __name__ == "__main__":
    raise SystemExit(main())
