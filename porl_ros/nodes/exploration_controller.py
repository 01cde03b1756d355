"""Exploration controller: turns each observation into an action.

Asks the policy server (GetAction) for the policy's action, then applies PORL's
epsilon-greedy for the learner's current phase: with probability epsilon the executed
action is uniform in the action bounds. Publishes Action with `exploratory` and the
`policy_version` that produced it. Only the newest observation is answered; a request
that fails or times out is retried while that observation is still the newest.
"""

from __future__ import annotations

import collections
import time

from rclpy.node import Node

from porl_ros.core.checkpoint import CheckpointError, load_actor
from porl_ros.core.exploration import EpsilonGreedy, EpsilonSchedule, StagedEpsilon
from porl_ros.core.phases import FINETUNE, PRESAMPLE
from porl_ros.nodes.conversions import from_float32_field, to_float32_field
from porl_ros.nodes.diagnostics import DIAGNOSTICS_RATE_PARAM, Health, NodeDiagnostics, RateMeter
from porl_ros.nodes.params import (Param, ParameterError, declare_params, non_negative, one_of, positive,
                                   probability, run_node)
from porl_ros.nodes.policy_server import NOT_LOADED_YET
from porl_ros.nodes.qos import STREAM_QOS
from porl_ros_interfaces.msg import Action, Observation
from porl_ros_interfaces.srv import GetAction

PARAMS = [
    Param("checkpoint", "", "Actor checkpoint whose metadata gives the action bounds (required)."),
    Param("bridge_id", 0, "Bridge whose observations this controller answers.", **non_negative()),
    Param("seed", 0, "Seed of the epsilon-greedy generator.", **non_negative()),
    Param("presample_epsilon", 0.3, "Epsilon at the start of the pre-sample stage.", **probability()),
    Param("presample_epsilon_end", 0.3, "Epsilon at the end of its linear decay in pre-sample.", **probability()),
    Param("presample_epsilon_decay_steps", 0, "Steps of that decay (0: constant).", **non_negative()),
    Param("finetune_epsilon", 0.0, "Epsilon at the start of fine-tuning.", **probability()),
    Param("finetune_epsilon_end", 0.0, "Epsilon at the end of its linear decay in fine-tune.", **probability()),
    Param("finetune_epsilon_decay_steps", 0, "Steps of that decay (0: constant).", **non_negative()),
    Param("presample_policy_action", "mean", "Policy action in pre-sample: 'mean' or 'sample'.",
          **one_of("mean", "sample")),
    Param("finetune_policy_action", "sample", "Policy action in fine-tune: 'mean' or 'sample' (SAC).",
          **one_of("mean", "sample")),
    Param("request_timeout_s", 15.0, "Retry a GetAction call unanswered for this long.", **positive()),
    Param("observation_topic", "porl/observation", "Observations from the bridge."),
    Param("action_topic", "porl/action", "Actions to the bridge."),
    Param("get_action_service", "porl/get_action", "The policy server's GetAction service."),
    DIAGNOSTICS_RATE_PARAM,
]


class ExplorationController(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__("exploration_controller", **node_kwargs)
        self.p = p = declare_params(self, PARAMS)
        if not p["checkpoint"]:
            raise ParameterError("parameter 'checkpoint' is required (it gives the action bounds)")
        try:
            _, meta = load_actor(p["checkpoint"])
        except CheckpointError as e:
            raise ParameterError(f"parameter 'checkpoint': {e}") from None
        self.obs_dim = meta.obs_dim
        self.greedy = EpsilonGreedy(meta.action_low, meta.action_high, seed=p["seed"])
        self.epsilon = StagedEpsilon(
            EpsilonSchedule(p["presample_epsilon"], p["presample_epsilon_end"], p["presample_epsilon_decay_steps"]),
            EpsilonSchedule(p["finetune_epsilon"], p["finetune_epsilon_end"], p["finetune_epsilon_decay_steps"]))
        self.steps_in_phase = {PRESAMPLE: 0, FINETUNE: 0}
        self.current_phase = PRESAMPLE
        self.pending: Observation | None = None  # newest observation not yet answered
        self.request_sent_at = 0.0
        self.in_flight = None
        self.rejected_observations = 0
        self.rejections = collections.Counter()  # refused inputs by field
        self.exploratory_actions = 0
        self.actions_sent = 0

        self.client = self.create_client(GetAction, p["get_action_service"])
        self.action_pub = self.create_publisher(Action, p["action_topic"], STREAM_QOS)
        self.create_subscription(Observation, p["observation_topic"], self._on_observation, STREAM_QOS)
        self.create_timer(0.5, self._check_request)
        self.observation_meter = RateMeter()
        self.action_meter = RateMeter()
        self.rejected_reported = 0
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
        mode = self.p["presample_policy_action" if phase == PRESAMPLE else "finetune_policy_action"]
        request = GetAction.Request(deterministic=(mode == "mean"), min_policy_version=obs.required_policy_version)
        request.state = obs.state
        self.request_sent_at = time.monotonic()
        self.in_flight = self.client.call_async(request)
        self.in_flight.add_done_callback(lambda future, obs=obs, phase=phase: self._on_response(future, obs, phase))

    def _on_response(self, future, obs: Observation, phase: str) -> None:
        if self.pending is not obs:
            return  # a newer observation arrived meanwhile; its own request answers it
        response = future.result()
        if response is None or not response.ok:
            why = response.error if response is not None else "no response"
            if why.startswith(NOT_LOADED_YET):
                self._retry_later(obs, 0.002)  # the weights are on their way (lockstep): ask again soon
            else:
                self.get_logger().warning(f"GetAction failed ({why}); retrying", throttle_duration_sec=5.0)
                self._retry_later(obs, 0.1)
            return
        try:
            policy_action = from_float32_field(response.action, self.greedy.low.shape[0], "response.action")
        except ValueError as e:
            self._reject("response.action", f"{e}; asking again")
            self._request(obs)
            return
        self.pending = None
        self.in_flight = None
        if phase != self.current_phase:
            self.get_logger().info(f"phase is now {phase}")
            self.current_phase = phase
        epsilon = self.epsilon.value(phase, self.steps_in_phase[phase])
        self.steps_in_phase[phase] += 1
        executed, exploratory = self.greedy(policy_action, epsilon)
        message = Action(bridge_id=obs.bridge_id, episode=obs.episode, step=obs.step,
                         exploratory=bool(exploratory), policy_version=response.policy_version)
        message.header.stamp = self.get_clock().now().to_msg()
        message.header.frame_id = obs.header.frame_id
        message.action = to_float32_field(executed)
        self.action_pub.publish(message)
        self.actions_sent += 1
        self.exploratory_actions += int(exploratory)
        self.action_meter.tick()

    def _health(self) -> Health:
        waiting = time.monotonic() - self.request_sent_at if self.pending is not None else 0.0
        service_ready = self.client.service_is_ready()
        values = {"phase": self.current_phase, "observations_per_second": self.observation_meter.rate(),
                  "actions_per_second": self.action_meter.rate(), "actions_sent": self.actions_sent,
                  "exploratory_fraction": self.exploratory_actions / self.actions_sent if self.actions_sent else 0.0,
                  "epsilon": self.epsilon.value(self.current_phase, self.steps_in_phase[self.current_phase]),
                  "rejected_observations": self.rejected_observations,
                  "pending_observation": self.pending is not None, "seconds_waiting_for_action": waiting,
                  "seconds_since_last_observation": self.observation_meter.age(),
                  "get_action_service_ready": service_ready}
        health = Health(values=values, message="answering observations")
        if not service_ready:
            health.warn(f"GetAction service {self.client.srv_name} not available (policy server down?)")
        elif self.pending is not None and waiting > self.p["request_timeout_s"]:
            health.warn(f"no GetAction answer for {waiting:.0f} s")
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
