"""Exploration controller: turns each observation into an action.

The decision is the core's ActionChooser (the same one `porl-ros experiment` runs): which
policy action to ask the policy server for (GetAction, mean or sample per phase), then
PORL's epsilon-greedy for the learner's current phase. Publishes Action with `exploratory`
and the `policy_version` that produced it. Only the newest observation is answered; a
request that fails or times out is retried while that observation is still the newest.
Parameters: ExplorationConfig (the algorithm) and ControllerSettings (this node's runtime).
"""

from __future__ import annotations

import collections
import time

from rclpy.node import Node

from porl_ros import graph
from porl_ros.core.checkpoint import CheckpointError, load_actor
from porl_ros.core.exploration import ActionChooser
from porl_ros.core.phases import FINETUNE, PRESAMPLE
from porl_ros.nodes.conversions import from_float32_field, to_float32_field
from porl_ros.nodes.diagnostics import Health, NodeDiagnostics, RateMeter
from porl_ros.nodes.params import ParameterError, as_dict, declare_settings, run_node
from porl_ros.nodes.qos import STREAM_QOS
from porl_ros_interfaces.msg import Action, Observation
from porl_ros_interfaces.srv import GetAction


class ExplorationController(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(graph.CONTROLLER, **node_kwargs)
        exploration, settings = declare_settings(self, graph.CONTROLLER)
        self.p = p = as_dict(settings)
        if not p["checkpoint"]:
            raise ParameterError("parameter 'checkpoint' is required (it gives the action bounds)")
        try:
            _, meta = load_actor(p["checkpoint"])
        except CheckpointError as e:
            raise ParameterError(f"parameter 'checkpoint': {e}") from None
        self.obs_dim, self.act_dim = meta.obs_dim, meta.act_dim
        self.chooser = ActionChooser(exploration, meta.action_low, meta.action_high, seed=p["seed"])
        self.current_phase = PRESAMPLE
        self.pending: Observation | None = None  # newest observation not yet answered
        self.request_sent_at = 0.0
        self.in_flight = None
        self.rejected_observations = 0
        self.refused_actions = 0  # observations left unanswered: the policy server refused or sent NaN
        self.rejections = collections.Counter()  # refused inputs by field

        self.client = self.create_client(GetAction, p["get_action_service"])
        self.action_pub = self.create_publisher(Action, p["action_topic"], STREAM_QOS)
        self.create_subscription(Observation, p["observation_topic"], self._on_observation, STREAM_QOS)
        self.create_timer(0.5, self._check_request)
        self.observation_meter = RateMeter()
        self.action_meter = RateMeter()
        self.rejected_reported = 0
        self.refused_reported = 0
        self.diagnostics = NodeDiagnostics(self, self._health, p["diagnostics_rate_hz"])

    def _reject(self, field: str, why: str) -> None:
        self.rejections[field] += 1
        self.get_logger().error(f"rejected {field}: {why}", throttle_duration_sec=1.0)

    def _on_observation(self, obs: Observation) -> None:
        if obs.bridge_id != self.p["bridge_id"]:
            self.rejected_observations += 1
            self._reject("observation.bridge_id", f"{obs.bridge_id} is not this controller's {self.p['bridge_id']}")
            return
        self.observation_meter.tick()
        try:
            from_float32_field(obs.state, self.obs_dim, "observation.state")
        except ValueError as e:
            self.rejected_observations += 1
            self._reject("observation.state", f"(episode {obs.episode}, step {obs.step}) {e}")
            return
        if obs.phase not in ("", PRESAMPLE, FINETUNE):
            self._reject("observation.phase", f"unknown phase '{obs.phase:.40}' (keeping {self.current_phase})")
            obs.phase = ""
        self.pending = obs
        self._request(obs)

    def _request(self, obs: Observation) -> None:
        if not self.client.service_is_ready():
            self.get_logger().warning("waiting for the policy server's GetAction service...",
                                      throttle_duration_sec=5.0)
            self.in_flight = None
            self.request_sent_at = time.monotonic()
            return
        phase = obs.phase if obs.phase in (PRESAMPLE, FINETUNE) else self.current_phase
        request = GetAction.Request(deterministic=self.chooser.deterministic(phase),
                                    min_policy_version=obs.required_policy_version)
        request.state = obs.state
        self.request_sent_at = time.monotonic()
        self.in_flight = self.client.call_async(request)
        self.in_flight.add_done_callback(lambda future, obs=obs, phase=phase: self._on_response(future, obs, phase))

    def _on_response(self, future, obs: Observation, phase: str) -> None:
        if self.pending is not obs:
            return  # a newer observation arrived meanwhile; its own request answers it
        response = future.result()
        if response is None or not response.ok:
            if response is not None and response.not_loaded_yet:
                self._retry_later(obs, 0.002)  # the weights are on their way (lockstep): ask again soon
            elif response is not None:
                # Refused (a state outside what the policy knows, a non-finite action): no action
                # for this observation. The bridge sees a missing action and stops the robot.
                self._no_action(obs, f"policy server refused: {response.error}")
            else:
                self.get_logger().warning("GetAction failed (no response); retrying", throttle_duration_sec=5.0)
                self._retry_later(obs, 0.1)
            return
        try:
            policy_action = from_float32_field(response.action, self.act_dim, "response.action")
        except ValueError as e:
            self._reject("response.action", str(e))
            self._no_action(obs, f"invalid action from the policy server: {e}")
            return
        self.pending = None
        self.in_flight = None
        if phase != self.current_phase:
            self.get_logger().info(f"phase is now {phase}")
            self.current_phase = phase
        executed, exploratory = self.chooser.explore(phase, policy_action, obs.episode)
        message = Action(bridge_id=obs.bridge_id, episode=obs.episode, step=obs.step,
                         exploratory=bool(exploratory), policy_version=response.policy_version)
        message.header.stamp = self.get_clock().now().to_msg()
        message.header.frame_id = obs.header.frame_id
        message.action = to_float32_field(executed)
        self.action_pub.publish(message)
        self.action_meter.tick()

    def _no_action(self, obs: Observation, why: str) -> None:
        """Leave `obs` unanswered (counted): never send a robot an action that is not one."""
        self.refused_actions += 1
        self.pending = None
        self.in_flight = None
        self.get_logger().error(f"no action for episode {obs.episode} step {obs.step}: {why}",
                                throttle_duration_sec=1.0)

    def _health(self) -> Health:
        waiting = time.monotonic() - self.request_sent_at if self.pending is not None else 0.0
        service_ready = self.client.service_is_ready()
        values = {"phase": self.current_phase, "observations_per_second": self.observation_meter.rate(),
                  "actions_per_second": self.action_meter.rate(), "actions_sent": self.chooser.actions,
                  "exploratory_fraction": self.chooser.exploratory_actions / max(self.chooser.actions, 1),
                  "epsilon": self.chooser.current_epsilon(self.current_phase),
                  "rejected_observations": self.rejected_observations, "refused_actions": self.refused_actions,
                  "pending_observation": self.pending is not None, "seconds_waiting_for_action": waiting,
                  "seconds_since_last_observation": self.observation_meter.age(),
                  "get_action_service_ready": service_ready}
        health = Health(values=values, message="answering observations")
        if not service_ready:
            health.warn(f"GetAction service {self.client.srv_name} not available (policy server down?)")
        elif self.pending is not None and waiting > self.p["request_timeout_s"]:
            health.warn(f"no GetAction answer for {waiting:.0f} s")
        new_refused = self.refused_actions - self.refused_reported
        self.refused_reported = self.refused_actions
        if new_refused:
            health.warn(f"{new_refused} observation(s) left without an action (policy server refused) since the "
                        f"last report")
        new_rejects = self.rejected_observations - self.rejected_reported
        self.rejected_reported = self.rejected_observations
        if new_rejects:
            health.warn(f"{new_rejects} invalid observation(s) rejected since the last report")
        return health

    def _retry_later(self, obs: Observation, delay_s: float) -> None:
        """Ask again for `obs` after a short pause, unless a newer observation came meanwhile."""
        self.in_flight = None
        self.request_sent_at = time.monotonic()

        def fire() -> None:
            self.destroy_timer(timer)
            if self.pending is obs:
                self._request(obs)

        timer = self.create_timer(delay_s, fire)

    def _check_request(self) -> None:
        """Deadline on the pending request: retry a lost or unanswered one."""
        if self.pending is None:
            return
        waited = time.monotonic() - self.request_sent_at
        if self.in_flight is None and waited > 0.5:
            self._request(self.pending)  # the service was not ready, or a retry got lost
        elif self.in_flight is not None and waited > self.p["request_timeout_s"]:
            self.get_logger().warning(f"no GetAction answer in {self.p['request_timeout_s']} s; retrying")
            self.client.remove_pending_request(self.in_flight)
            self._request(self.pending)


def main(args=None) -> int:
    return run_node(ExplorationController, args)


if __name__ == "__main__":
    raise SystemExit(main())
