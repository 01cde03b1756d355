"""Simulator bridge: owns an environment back-end and runs its episodes.

Publishes each Observation, executes the Action that answers it, publishes the
Transition (with a gap-free `seq`), resets at episode ends. Two timing modes:
  lockstep      after each transition, wait for the learner's TransitionAck before the
                next observation: the UTD ratio is exact and a seeded run reproducible.
  free_running  step at `control_rate_hz` as a real robot would; the learner keeps up as
                it can and reports its effective UTD.
Deadlines instead of silent hangs: an observation unanswered for `action_timeout_s` and
a transition unacknowledged for `ack_timeout_s` are logged and sent again.
That graph side (shared with arm_bridge) is bridge_protocol.BridgeNode; the environment
side (clamped action, env step, numbering, seeded resets) is the core's EnvStepper, which
`porl-ros experiment` runs too; this file adds monitoring.
Monitoring: rviz markers (end effector, goal, the executed action colored exploratory vs
policy, a success flash) and sensor_msgs/JointState at `viz_rate_hz`, independent of the
step rate, and a DiagnosticArray on /diagnostics.
"""

from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import JointState
from visualization_msgs.msg import MarkerArray

from porl_ros import graph
from porl_ros.core.checkpoint import CheckpointError, load_actor
from porl_ros.core.rollout import EnvStepper, open_env
from porl_ros.envs.base import EnvSetupError
from porl_ros.nodes.bridge_protocol import BridgeNode
from porl_ros.nodes.diagnostics import Health, NodeDiagnostics, RateMeter
from porl_ros.nodes.params import ParameterError, run_node
from porl_ros.nodes.visualization import VIZ_QOS, build_markers
from porl_ros_interfaces.msg import Action


class SimBridge(BridgeNode):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(graph.SIM_BRIDGE, **node_kwargs)
        p = self.p
        try:
            self.env = open_env(p["env_id"], self.episode_settings, p["seed"])
        except (ValueError, KeyError, ImportError) as e:
            raise ParameterError(f"parameter 'env_id' = {p['env_id']!r}: {e}") from None
        except EnvSetupError as e:  # e.g. CoppeliaSim missing or no X display: say what to do, no traceback
            raise ParameterError(f"parameter 'env_id' = {p['env_id']!r}: the simulator cannot start: {e}") from None
        self.spec = self.env.spec
        if p["checkpoint"]:
            try:
                load_actor(p["checkpoint"], expect={"obs_dim": self.spec.obs_dim, "act_dim": self.spec.act_dim})
            except CheckpointError as e:
                raise ParameterError(f"checkpoint does not fit env '{p['env_id']}': {e}") from None
        self.stepper = EnvStepper(self.env, p["seed"], p["first_seq"], p["first_episode"])
        self._setup_graph(self.stepper.book)
        self.pending_action: np.ndarray | None = None
        self.counters = {"rejected_actions": 0, "stale_actions": 0, "observation_resends": 0,
                         "transition_resends": 0, "episodes": 0, "successes": 0}
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
        text = f"bridge {self.p['bridge_id']}  episode {self.book.episode}  step {self.book.step}  {self.phase}"
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
                  "policy_version": self.policy_version, "episode": self.book.episode, "step": self.book.step,
                  "env_steps": self.book.seq, "steps_per_second": self.step_meter.rate(),
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
        # (EnvStepper clamps it to the bounds, whatever the controller sent.)
        action = self._accept_action(msg, self.spec.act_dim, waiting=not self.awaiting_ack)
        if action is None:
            return
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

    @property
    def state(self) -> np.ndarray:
        return self.stepper.state

    def _execute(self, action: np.ndarray, action_msg: Action) -> None:
        succeeded_before = self.book.episode_success
        record = self.stepper.step(action)
        self.step_meter.tick()
        self.viz_action, self.viz_exploratory = record.action, bool(action_msg.exploratory)
        if record.success and not succeeded_before:
            self.success_flash_pending = True  # flashes once, when the episode first succeeds
        if record.episode_end is not None:
            self._episode_ended(record.episode_end)
        self._send_transition(action_msg, record)
        self._reached_max_env_steps()
        if not self.lockstep and not self.finished:
            self._publish_observation()

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
