"""Policy server: holds the current actor and answers GetAction.

Loads the initial actor from a checkpoint, then swaps in each newer version the
learner publishes on the latched weights topic, under a lock, so no request is dropped
or served by a half-loaded actor. Usable alone to deploy a policy with no learning:
    ros2 run porl_ros policy_server --ros-args -p checkpoint:=/path/to/actor_dir
"""

from __future__ import annotations

import collections

import numpy as np
import torch
from rclpy.node import Node

from porl_ros import graph
from porl_ros.core.checkpoint import CheckpointError, actor_from_bytes, load_actor
from porl_ros.core.device import resolve_device
from porl_ros.nodes.conversions import from_float32_field, from_uint8_field, to_float32_field
from porl_ros.nodes.diagnostics import Health, NodeDiagnostics, RateMeter
from porl_ros.nodes.params import ParameterError, as_dict, declare_settings, run_node
from porl_ros.nodes.qos import LATCHED_QOS
from porl_ros_interfaces.msg import PolicyWeights
from porl_ros_interfaces.srv import GetAction


class PolicyServer(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(graph.POLICY_SERVER, **node_kwargs)
        self.p = as_dict(*declare_settings(self, graph.POLICY_SERVER))
        try:
            self.device = str(resolve_device(self.p["device"]))
        except ValueError as e:
            raise ParameterError(f"parameter 'device': {e}") from None
        self.actor = None
        self.meta = None
        self.version = 0
        self.served = 0
        self.refused = 0
        self.version_refusals = 0  # asked for a version not loaded yet (normal, retried)
        self.out_of_range_states = 0  # states far outside the actor's training distribution
        self.non_finite_actions = 0  # the actor produced NaN/inf: refused, never sent to a robot
        self.rejected_weights = 0
        self.rejections = collections.Counter()  # refused inputs by field (weights.* and request.*)
        self._generator = torch.Generator().manual_seed(self.p["seed"])
        if self.p["checkpoint"]:
            try:
                self.actor, self.meta = load_actor(self.p["checkpoint"], device=self.device)
            except CheckpointError as e:
                raise ParameterError(f"parameter 'checkpoint': {e}") from None
            self.actor.eval()
            self.version = int(self.meta.policy_version)
            self.get_logger().info(f"serving {self.p['checkpoint']} (version {self.version}, "
                                   f"obs {self.meta.obs_dim}, act {self.meta.act_dim})")
        self.create_service(GetAction, self.p["get_action_service"], self._on_get_action)
        self.create_subscription(PolicyWeights, self.p["weights_topic"], self._on_weights, LATCHED_QOS)
        self.request_meter = RateMeter()
        self.weights_meter = RateMeter()  # accepted weight versions
        self.last_weights_error = ""
        self.refused_reported = 0
        self.diagnostics = NodeDiagnostics(self, self._health, self.p["diagnostics_rate_hz"])

    # ------------------------------------------------------------------ weights
    def _on_weights(self, msg: PolicyWeights) -> None:
        if self.p["run_id"] and msg.run_id != self.p["run_id"]:
            # Another run's learner on this domain, or a forger: never the policy that drives this robot.
            self._reject_weights(f"run {msg.run_id!r:.40} is not this run ({self.p['run_id']!r})", field="run_id")
            return
        if msg.version <= self.version and self.actor is not None:
            return  # already serving this or a newer one (latched re-delivery)
        if msg.format != "safetensors":
            self._reject_weights(f"format '{msg.format:.40}' is not 'safetensors'", field="format")
            return
        if len(msg.data) == 0:
            self._reject_weights("data is empty")
            return
        # A new actor must fit the robot the current one drives: sizes and action bounds.
        expect = {"obs_dim": self.meta.obs_dim, "act_dim": self.meta.act_dim, "action_low": self.meta.action_low,
                  "action_high": self.meta.action_high} if self.meta else None
        try:
            actor, meta = actor_from_bytes(from_uint8_field(msg.data), device=self.device, expect=expect)
        except CheckpointError as e:
            self._reject_weights(str(e))
            return
        actor.eval()
        # Swapped in one step between two requests: no request sees a half-loaded actor.
        self.actor, self.meta, self.version = actor, meta, int(msg.version)
        self.weights_meter.tick()
        self.last_weights_error = ""
        self.get_logger().info(f"now serving policy version {self.version}")

    def _reject_weights(self, why: str, field: str = "data") -> None:
        self.rejected_weights += 1
        self.rejections[f"weights.{field}"] += 1
        self.last_weights_error = why
        self.get_logger().error(f"rejected policy weights (field '{field}'): {why}; still serving version "
                                f"{self.version}", throttle_duration_sec=1.0)

    def _health(self) -> Health:
        values = {"policy_version": self.version, "requests_per_second": self.request_meter.rate(),
                  "served": self.served, "refused": self.refused, "rejected_weights": self.rejected_weights,
                  "out_of_range_states": self.out_of_range_states, "non_finite_actions": self.non_finite_actions,
                  "weight_updates": self.weights_meter.count,
                  "seconds_since_last_weights": self.weights_meter.age(),
                  "seconds_since_last_request": self.request_meter.age(), "device": self.device}
        health = Health(values=values, message=f"serving policy version {self.version}")
        if self.actor is None:
            health.error(f"no policy yet: waiting for weights on {self.p['weights_topic']}")
        if self.last_weights_error:
            health.warn(f"last weights rejected ({self.last_weights_error})")
        new_refusals = self.refused - self.refused_reported
        self.refused_reported = self.refused
        if new_refusals:
            health.warn(f"{new_refusals} GetAction request(s) refused since the last report")
        return health

    # ------------------------------------------------------------------ requests
    def _on_get_action(self, request: GetAction.Request, response: GetAction.Response) -> GetAction.Response:
        self.request_meter.tick()
        def refuse(why: str) -> GetAction.Response:
            self.refused += 1
            response.ok, response.error, response.policy_version = False, why, self.version
            self.get_logger().warning(f"GetAction refused: {why}", throttle_duration_sec=5.0)
            return response

        # Never block here: the weights arrive through this same single-threaded executor.
        # A request for a version not loaded yet is refused at once and the caller retries.
        actor, version = self.actor, self.version
        if actor is None or version < request.min_policy_version:
            self.version_refusals += 1
            have = "no policy" if actor is None else f"version {version}"
            response.ok, response.not_loaded_yet, response.policy_version = False, True, version
            response.error = f"policy version not loaded yet: asked for >= {request.min_policy_version}, have {have}"
            return response
        try:
            state = from_float32_field(request.state, actor.obs_dim, "state")
        except ValueError as e:
            self.rejections["request.state"] += 1
            return refuse(str(e))
        # A state far outside the training distribution gives a meaningless (or NaN) action.
        normalised = np.abs((state - _numpy(actor.obs_mean)) / _numpy(actor.obs_std))
        limit = self.p["max_normalised_state"]
        if not np.all(normalised <= limit):  # also catches an overflow to inf / NaN
            worst = int(np.argmax(np.nan_to_num(normalised, nan=np.inf)))
            self.out_of_range_states += 1
            self.rejections["request.state_range"] += 1
            return refuse(f"state[{worst}] = {state[worst]:.6g} is {normalised[worst]:.3g} training standard "
                          f"deviations from the policy's training mean (limit max_normalised_state = {limit:g}): "
                          f"outside what the policy was trained on")
        action = actor.act(state, deterministic=request.deterministic, generator=self._generator)
        if not np.all(np.isfinite(action)):
            self.non_finite_actions += 1
            self.rejections["response.action"] += 1
            return refuse("the policy produced a non-finite action (NaN or inf); not sent")
        response.action = to_float32_field(np.asarray(action, dtype=np.float32))
        response.policy_version = version
        response.ok = True
        self.served += 1
        return response


def _numpy(buffer: torch.Tensor) -> np.ndarray:
    return buffer.detach().cpu().numpy().astype(np.float64)


def main(args=None) -> int:
    return run_node(PolicyServer, args)


if __name__ == "__main__":
    raise SystemExit(main())
