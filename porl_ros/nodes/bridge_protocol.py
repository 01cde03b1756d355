"""What every bridge does towards the graph, whatever drives its steps.

A bridge publishes an Observation, takes the Action that answers it, publishes the
Transition (gap-free `seq`) and, in lockstep, waits for the learner's TransitionAck
before the next step. `BridgeNode` holds that contract once: the endpoints, the
phase/done handling from acks and TrainingStatus, the message building and the
deadlines (wait for peers before the first step; re-send an unanswered observation or
an unacknowledged transition). The numbering of transitions (seq, episode, step) and the
episode totals are the core's EpisodeBook. A subclass (sim_bridge: an environment
back-end; arm_bridge: robot drivers behind a safety layer) supplies the rest:
  state                   the observation of the step in progress
  started                 whether the first step has been taken
  _first_step()           what to do once every peer is matched
  _awaiting_action()      whether an unanswered observation is out
  _after_ack()            what follows an acknowledged transition
  _finish()               how to stop (the arm also halts)
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node

from porl_ros import graph
from porl_ros.core.phases import DONE, PHASES
from porl_ros.core.rollout import EpisodeBook, EpisodeSummary, StepRecord
from porl_ros.nodes.conversions import from_float32_field, to_float32_field
from porl_ros.nodes.params import as_dict, declare_settings
from porl_ros.nodes.qos import STATUS_QOS, STREAM_QOS
from porl_ros_interfaces.msg import Action, Observation, TrainingStatus, Transition, TransitionAck


class BridgeNode(Node):
    def __init__(self, kind: str, **node_kwargs) -> None:
        super().__init__(kind, **node_kwargs)
        self.episode_settings, settings = declare_settings(self, kind)  # EpisodeSettings, its own
        self.p = as_dict(self.episode_settings, settings)
        self.lockstep = self.p["timing_mode"] == graph.LOCKSTEP
        self.finished = False
        self.exit_code = 0
        self.foreign_messages = 0  # status/acks of another run, ignored

    def _setup_graph(self, book: EpisodeBook) -> None:
        """Step bookkeeping and the graph's topics; called once the bridge's own parameters passed."""
        p = self.p
        self.book = book
        self.phase = ""
        self.policy_version = 0  # newest version the learner has announced
        self.awaiting_ack = False
        self.last_transition: Transition | None = None
        self.last_publish = time.monotonic()
        self.obs_pub = self.create_publisher(Observation, p["observation_topic"], STREAM_QOS)
        self.transition_pub = self.create_publisher(Transition, p["transition_topic"], STREAM_QOS)
        self.create_subscription(Action, p["action_topic"], self._on_action, STREAM_QOS)
        self.create_subscription(TransitionAck, p["ack_topic"], self._on_ack, STREAM_QOS)
        self.create_subscription(TrainingStatus, p["status_topic"], self._on_status, STATUS_QOS)
        self.create_timer(0.2, self._check_deadlines)

    # ------------------------------------------------------------------ incoming
    def _accept_action(self, msg: Action, act_dim: int, waiting: bool) -> np.ndarray | None:
        """The action in `msg` if it answers the observation out now (`waiting`), else None (counted)."""
        if msg.bridge_id != self.p["bridge_id"]:
            return None
        if not waiting or msg.episode != self.book.episode or msg.step != self.book.step:
            self.counters["stale_actions"] += 1  # answers an observation already handled (or none)
            return None
        try:
            return from_float32_field(msg.action, act_dim, "action.action")
        except ValueError as e:
            self.counters["rejected_actions"] += 1
            self.get_logger().error(f"rejected action for episode {msg.episode} step {msg.step}: {e}")
            return None

    def _from_my_run(self, msg, kind: str) -> bool:
        """Whether a learner message belongs to this bridge's run (any, when run_id is unset)."""
        if not self.p["run_id"] or msg.run_id == self.p["run_id"]:
            return True
        self.foreign_messages += 1
        self.get_logger().warning(f"ignoring a {kind} of run {msg.run_id!r} (this is run {self.p['run_id']!r}): "
                                  f"another run's learner on this ROS domain, or a forger",
                                  throttle_duration_sec=5.0)
        return False

    def _on_ack(self, msg: TransitionAck) -> None:
        if msg.bridge_id != self.p["bridge_id"] or not self.awaiting_ack or not self._from_my_run(msg, "ack"):
            return
        if self.last_transition is None or msg.seq != self.last_transition.seq:
            return
        self.awaiting_ack = False
        self.policy_version = msg.policy_version
        self._set_phase(msg.phase)
        self._after_ack()

    def _on_status(self, msg: TrainingStatus) -> None:
        if not self._from_my_run(msg, "status"):
            return
        if msg.phase == DONE:
            self._set_phase(DONE)  # also in lockstep: the last ack may never come once the learner exits
        elif not self.lockstep:
            self.policy_version = max(self.policy_version, msg.policy_version)
            self._set_phase(msg.phase)

    def _set_phase(self, phase: str) -> None:
        if phase == DONE:
            if not self.finished:
                self.get_logger().info(f"learner reports the run is done; stopping after {self.book.seq} steps")
                self._finish()
        elif phase in PHASES and phase != self.phase:
            self.get_logger().info(f"learner phase: {phase}")
            self.phase = phase

    def _finish(self) -> None:
        self.finished = True

    # ------------------------------------------------------------------ outgoing
    def _publish_observation(self) -> None:
        msg = Observation(bridge_id=self.p["bridge_id"], episode=self.book.episode, step=self.book.step,
                          required_policy_version=self.policy_version if self.lockstep else 0,
                          phase=self.phase if self.phase in PHASES else "")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.p["frame_id"]
        msg.state = to_float32_field(self.state)
        self.obs_pub.publish(msg)
        self.last_publish = time.monotonic()

    def _send_transition(self, action_msg: Action, record: StepRecord) -> None:
        """Publish the transition `record` (numbered by the book); in lockstep it awaits its ack."""
        transition = Transition(bridge_id=self.p["bridge_id"], seq=record.seq, episode=record.episode,
                                step=record.step, reward=float(record.reward), terminated=record.terminated,
                                truncated=record.truncated, success=record.success,
                                exploratory=action_msg.exploratory, policy_version=action_msg.policy_version,
                                run_id=self.p["run_id"])
        transition.header.stamp = self.get_clock().now().to_msg()
        transition.header.frame_id = self.p["frame_id"]
        transition.state = to_float32_field(record.state)
        transition.action = to_float32_field(record.action)
        transition.next_state = to_float32_field(record.next_state)
        self.last_transition = transition
        self.awaiting_ack = self.lockstep
        self._publish_transition(transition)

    def _publish_transition(self, transition: Transition) -> None:
        self.transition_pub.publish(transition)
        self.last_publish = time.monotonic()

    def _reached_max_env_steps(self) -> bool:
        if self.p["max_env_steps"] and self.book.seq >= self.p["max_env_steps"]:
            self.get_logger().info(f"reached max_env_steps={self.p['max_env_steps']}")
            self._finish()
            return True
        return False

    def _episode_ended(self, summary: EpisodeSummary) -> None:
        self.counters["episodes"] = self.book.episodes
        self.counters["successes"] = self.book.successes
        self.get_logger().info(f"episode {summary.episode}: return {summary.episode_return:.2f}, "
                               f"success {summary.success}", throttle_duration_sec=2.0)

    # ------------------------------------------------------------------ deadlines
    def _peers_missing(self) -> list[str]:
        """Which subscribers the first observation and transition would be lost without."""
        missing = []
        if self.obs_pub.get_subscription_count() == 0:
            missing.append(f"a subscriber of {self.obs_pub.topic_name} (exploration controller)")
        matched, wanted = self.transition_pub.get_subscription_count(), self.p["min_transition_subscribers"]
        if matched < wanted:
            missing.append(f"{wanted - matched} more subscriber(s) of {self.transition_pub.topic_name} (learner)")
        return missing

    def _check_deadlines(self) -> None:
        if self.finished:
            return
        if not self.started:
            # Volatile topics drop what is published before the peers are matched: wait.
            missing = self._peers_missing()
            if missing:
                self.get_logger().info(f"waiting for {', '.join(missing)}", throttle_duration_sec=5.0)
                return
            self._first_step()
            return
        waited = time.monotonic() - self.last_publish
        if self.awaiting_ack and waited > self.p["ack_timeout_s"]:
            self.counters["transition_resends"] += 1
            self.get_logger().warning(f"no ack for transition {self.last_transition.seq} in "
                                      f"{self.p['ack_timeout_s']} s (is the learner running?); re-sending")
            self._publish_transition(self.last_transition)
        elif self._awaiting_action() and waited > self.p["action_timeout_s"]:
            self.counters["observation_resends"] += 1
            self.get_logger().warning(f"no action for episode {self.book.episode} step {self.book.step} in "
                                      f"{self.p['action_timeout_s']} s (controller / policy server up?); "
                                      f"re-sending the observation")
            self._publish_observation()
