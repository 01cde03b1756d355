"""Learner: replay buffer + PORL agent (critic ensemble, SAC actor) on GPU when there is one.

Consumes Transitions, runs the pre-sample stage (actor frozen, critics trained at UTD
`utd_ratio`) for `presample_steps` env steps and then fine-tunes with SAC, publishes
versioned actor weights (latched), TrainingStatus, and writes checkpoints and a
metrics log into `run_dir`. Its state (checkpoints + an fsync'd transition log, see
porl_ros.core.learner_state) lives in `run_dir/state`, so `resume:=true` continues a run
after a crash or a stop. In lockstep mode each transition's updates run before its
TransitionAck, so the UTD ratio is exact; in free_running mode a training thread
updates as fast as it can within the same budget and the status reports the effective UTD.
Parameters: PorlConfig (the algorithm) and LearnerSettings (this node's runtime).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch
from rclpy.node import Node

from porl_ros import graph
from porl_ros.core.checkpoint import CheckpointError, PolicyMeta, actor_to_bytes, load_actor, save_actor
from porl_ros.core.config import PorlConfig
from porl_ros.core.learner import TransitionRejected, build_learner, starting_actor
from porl_ros.core.learner_state import LearnerStateError, LearnerStateStore, LoggedTransition, resume_learner
from porl_ros.core.networks import SquashedGaussianActor
from porl_ros.core.phases import DONE
from porl_ros.monitoring.evaluations import SNAPSHOT_DIR, snapshot_name
from porl_ros.monitoring.tensorboard import TensorBoardLogger
from porl_ros.nodes.conversions import to_uint8_field
from porl_ros.nodes.diagnostics import Health, NodeDiagnostics, RateMeter, learner_health, seconds_since
from porl_ros.nodes.params import ParameterError, as_dict, declare_settings, run_node
from porl_ros.nodes.qos import LATCHED_QOS, STATUS_QOS, STREAM_QOS
from porl_ros.nodes.settings import LearnerSettings
from porl_ros_interfaces.msg import PolicyWeights, TrainingStatus, Transition, TransitionAck

# TrainingStatus.epsilon: the fraction of exploratory actions among this many latest transitions.
EXPLORATION_WINDOW = 200


def _initial_actor(settings: LearnerSettings, config: PorlConfig) -> tuple[SquashedGaussianActor, PolicyMeta | None]:
    if settings.checkpoint:
        try:
            actor, meta = load_actor(settings.checkpoint)
        except CheckpointError as e:
            raise ParameterError(f"parameter 'checkpoint': {e}") from None
        try:
            return starting_actor(config, actor), meta
        except ValueError as e:
            raise ParameterError(f"parameter 'actor_log_std_init': {e}") from None
    from porl_ros.envs.registry import make_env  # only needed for a from-scratch run
    env = make_env(settings.env_id)
    spec = env.spec
    env.close()
    return starting_actor(config, spec=spec), None


class LearnerNode(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(graph.LEARNER, **node_kwargs)
        config, settings = declare_settings(self, graph.LEARNER)
        self.p = p = as_dict(settings)
        if p["torch_threads"]:
            torch.set_num_threads(p["torch_threads"])
        actor, meta = _initial_actor(settings, config)
        self.env_id = meta.env_id if meta else p["env_id"]
        self.learner = build_learner(actor, config, p["replay_capacity"], p["num_bridges"],
                                     p["weights_every_env_steps"], max_abs_reward=p["max_abs_reward"])
        self.learner.policy_version = int(meta.policy_version) if meta else 0
        self.lock = threading.Lock()  # replay/agent/log shared with the free-running training thread
        self.run_dir = Path(p["run_dir"])
        self.store = LearnerStateStore(self.run_dir / "state", actor.obs_dim, actor.act_dim,
                                       keep=p["keep_checkpoints"])
        if not p["resume"] and self.store.has_state():
            raise ParameterError(
                f"parameter 'run_dir': {self.run_dir.resolve()} already holds learner state ({self.store.dir}); "
                f"set resume:=true to continue that run (porl-ros run --resume), or choose a new run_dir")
        self.resumed = p["resume"] and self._recover()
        self.store.start_segment()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_file = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        # After a resume, TensorBoard hides what the stopped process wrote past the restored step.
        self.tensorboard = (TensorBoardLogger(self.run_dir / "tensorboard",
                                              purge_step=self.learner.env_steps if self.resumed else None)
                            if p["tensorboard"] else None)
        self.transition_meter = RateMeter()
        self.finished = False
        self.exit_code = 0
        self.done = False
        self.closed = False
        self.last_weights_time = 0.0
        self.last_guard_event = ""  # the regression guard's last restore, for diagnostics
        self.lockstep = p["timing_mode"] == graph.LOCKSTEP
        self.recent_exploratory: collections.deque = collections.deque(maxlen=EXPLORATION_WINDOW)

        self.weights_pub = self.create_publisher(PolicyWeights, p["weights_topic"], LATCHED_QOS)
        self.status_pub = self.create_publisher(TrainingStatus, p["status_topic"], STATUS_QOS)
        self.ack_pub = self.create_publisher(TransitionAck, p["ack_topic"], STREAM_QOS)
        self.create_subscription(Transition, p["transition_topic"], self._on_transition, STREAM_QOS)
        self.create_timer(1.0 / p["status_rate_hz"], self._publish_status)
        self.diagnostics = NodeDiagnostics(self, self._health, p["diagnostics_rate_hz"])
        if not self.lockstep or not p["log_fsync"]:
            self.create_timer(p["log_sync_period_s"], self._sync_log)
        # The initial (or resumed) actor, for late-joining policy servers; after a resume
        # it gets a fresh version, so versions never repeat across the restart.
        self._publish_weights(new_version=self.resumed)
        device = self.learner.agent.device
        self.get_logger().info(
            f"learner on {device}: {config.n_critics} critics, UTD {config.utd_ratio}, batch {config.batch_size}, "
            f"T={config.presample_steps}, total {p['total_env_steps']} env steps, {p['timing_mode']}; "
            f"run dir {self.run_dir}")
        self.trainer = None
        self._intake_waiting = 0
        total = p["total_env_steps"]
        if total and self.learner.env_steps >= total:
            self._finish()  # resumed a run that had already reached its end
        elif not self.lockstep:
            self.trainer = threading.Thread(target=self._train_forever, name="porl-trainer", daemon=True)
            self.trainer.start()

    @property
    def rejections(self) -> collections.Counter:
        """Rejected transitions by field (for diagnostics)."""
        return self.learner.rejected

    # ------------------------------------------------------------------ resume
    def _recover(self) -> bool:
        """Load the newest good checkpoint and replay the transition log after it."""
        logger = self.get_logger()
        levels = {"error": logger.error, "warning": logger.warning, "info": logger.info}
        started = time.monotonic()
        try:
            report = resume_learner(self.learner, self.store, log=lambda level, text: levels[level](text))
        except LearnerStateError as e:
            raise ParameterError(f"parameter 'resume': cannot resume from {self.store.dir}: {e}") from None
        if report.checkpoint is None and report.records_replayed == 0:
            logger.info(f"resume: no earlier state in {self.store.dir}; starting a new run")
            return False
        s = self.learner.summary()
        logger.info(f"resumed from {report.checkpoint or 'the start'} + {report.records_replayed} log records in "
                    f"{time.monotonic() - started:.1f} s: {s['env_steps']} env steps, phase {s['phase']}, "
                    f"replay {s['replay_size']}, {s['gradient_updates']} critic updates, "
                    f"last policy version {s['policy_version']}")
        return True

    # ------------------------------------------------------------------ transitions
    def _on_transition(self, msg: Transition) -> None:
        if self.p["run_id"] and msg.run_id != self.p["run_id"]:
            # Another run's bridge on this domain, or a forger: not ours to store, nor to ack.
            self.learner.rejected["run_id"] += 1
            self.get_logger().error(f"rejected a transition of run {msg.run_id!r} (this is run "
                                    f"{self.p['run_id']!r})", throttle_duration_sec=5.0)
            return
        self.transition_meter.tick()
        self.recent_exploratory.append(bool(msg.exploratory))
        if self.done:
            self._ack(msg)
            return
        self._intake_waiting += 1  # only this (executor) thread writes it; the trainer reads it
        with self.lock:
            self._intake_waiting -= 1
            expected = self.learner.next_seq[msg.bridge_id] if msg.bridge_id < self.p["num_bridges"] else None
            if expected is not None and msg.seq == expected - 1 and self.lockstep:
                self._ack(msg)  # the bridge re-sent one we already have: it missed our ack
                return
            phase_before = self.learner.phase
            restart = self.learner.is_bridge_restart(msg.bridge_id, msg.seq)
            undoes_jump = self.learner.undoes_jump(msg.bridge_id, msg.seq)
            try:
                record = self.learner.add_transition(
                    msg.bridge_id, msg.seq, msg.episode, msg.state, msg.action, msg.reward, msg.next_state,
                    msg.terminated, msg.truncated, msg.success, step=msg.step)
            except TransitionRejected as e:
                self.get_logger().error(f"rejected transition seq {msg.seq} of bridge {msg.bridge_id}: {e}",
                                        throttle_duration_sec=1.0)
                # Acked all the same (in lockstep), so a bridge with bad data skips it and goes on.
                self._ack(msg)
                return
            self.store.log_transition(LoggedTransition(
                msg.bridge_id, msg.seq, msg.episode, msg.step, msg.state, msg.action, float(msg.reward), msg.next_state,
                bool(msg.terminated), bool(msg.truncated), bool(msg.success)))
            if restart:
                self.get_logger().warning(f"bridge {msg.bridge_id} restarted (seq 0 after {expected - 1}); "
                                          f"its sequence starts again")
            elif undoes_jump:
                self.get_logger().warning(f"bridge {msg.bridge_id}: seq {msg.seq} continues the stream from before "
                                          f"a jump to {expected - 1}: that jump was spurious (forged or corrupt) "
                                          f"and is undone", throttle_duration_sec=1.0)
            elif expected is not None and msg.seq > expected:
                self.get_logger().warning(f"bridge {msg.bridge_id}: {msg.seq - expected} transition(s) missing "
                                          f"before seq {msg.seq} (gap counted)")
            if self.learner.phase != phase_before:
                self.get_logger().info(f"pre-sample done after {self.learner.env_steps} env steps: "
                                       f"fine-tuning the actor now")
            if record is not None:
                self._log_episode(record)
            if self.learner.guard_events:
                self._report_guard()
            if self.lockstep:
                self.learner.train()
                if self.learner.weights_due():
                    self._publish_weights()
            self._maybe_checkpoint()
            self._maybe_snapshot()
            if self.lockstep:
                # Written (and by default fsync'd) before the ack: an acked transition survives kill -9.
                self.store.sync(fsync=self.p["log_fsync"])
        total = self.p["total_env_steps"]
        if total and self.learner.env_steps >= total:
            self._finish()
        self._ack(msg)

    def _ack(self, msg: Transition) -> None:
        if not self.lockstep:
            return
        ack = TransitionAck(bridge_id=msg.bridge_id, seq=msg.seq, policy_version=self.learner.policy_version,
                            phase=DONE if self.done else self.learner.phase, run_id=self.p["run_id"])
        ack.header.stamp = self.get_clock().now().to_msg()
        self.ack_pub.publish(ack)

    # ------------------------------------------------------------------ free running
    def _train_forever(self) -> None:
        """Free running: update as fast as the CPU/GPU allows, within the learner's budget (at most
        its UTD ratio per stored env step), and never ahead of waiting transitions."""
        learner = self.learner
        while not self.done and not self.finished:
            # Python locks are not fair: without this the trainer re-takes the lock at once
            # and the transition callback starves (the replay then lags the robot by minutes).
            while self._intake_waiting and not self.done:
                time.sleep(0.0002)
            if not learner.update_due():
                time.sleep(0.002)  # caught up with the data: wait for the robot
                continue
            with self.lock:
                metrics = learner.train_one_update()
                due = (learner.actor_changed()
                       and time.monotonic() - self.last_weights_time > 1.0 / self.p["max_weights_rate_hz"])
                if due:
                    self._publish_weights()
            if not metrics:
                time.sleep(0.01)  # not enough data yet

    # ------------------------------------------------------------------ outputs
    def _publish_weights(self, new_version: bool = False) -> None:
        """Publish the actor; called with self.lock held (or before any thread runs)."""
        if new_version or self.learner.agent.actor_updates > 0:
            self.learner.mark_weights_published()
            # Durable before it leaves: a version once seen is never reused after a crash.
            self.store.log_policy_version(self.learner.policy_version)
            self.store.sync()
        meta = self.learner.policy_meta(self.env_id)
        msg = PolicyWeights(version=self.learner.policy_version, format="safetensors", run_id=self.p["run_id"])
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.data = to_uint8_field(actor_to_bytes(self.learner.agent.policy, meta))
        self.weights_pub.publish(msg)
        self.last_weights_time = time.monotonic()

    def _report_guard(self) -> None:
        """The regression guard restored the best actor: say so and serve it at once; self.lock held."""
        for event in self.learner.guard_events:
            self.get_logger().warning(event)
            self.last_guard_event = event
        self.learner.guard_events.clear()
        self._publish_weights()

    def _status_message(self) -> TrainingStatus:
        s = self.learner.summary()
        msg = TrainingStatus(
            phase=DONE if self.done else s["phase"], env_steps=s["env_steps"], gradient_updates=s["gradient_updates"],
            policy_version=s["policy_version"], episodes=s["episodes"], success_rate=s["success_rate"],
            last_episode_return=s["last_episode_return"], critic_loss=s["critic_loss"], actor_loss=s["actor_loss"],
            alpha=s["alpha"], q_mean=s["q_mean"], replay_size=s["replay_size"],
            updates_per_second=s["updates_per_second"], effective_utd=s["effective_utd"],
            epsilon=float(np.mean(self.recent_exploratory)) if self.recent_exploratory else 0.0,
            q_calibration_gap=s["q_calibration_gap"], seq_gaps=s["seq_gaps"],
            rejected_transitions=s["rejected_transitions"], guard_restores=s["guard_restores"],
            guard_baseline_success=s["guard_baseline_success"], guard_window_success=s["guard_window_success"],
            run_id=self.p["run_id"])
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def _publish_status(self) -> None:
        with self.lock:
            msg = self._status_message()
            if self.tensorboard is not None:
                summary, update_metrics = self.learner.summary(), dict(self.learner.last_metrics)
        self.status_pub.publish(msg)
        if self.tensorboard is not None:
            self.tensorboard.log_summary(summary, update_metrics)

    def _health(self) -> Health:
        with self.lock:
            summary = self.learner.summary()
        return learner_health(summary, done=self.done, seconds_since_transition=self.transition_meter.age(),
                              seconds_since_weights=seconds_since(self.last_weights_time),
                              transitions_per_second=self.transition_meter.rate(),
                              stall_warn_s=self.p["stall_warn_s"], last_guard_event=self.last_guard_event)

    def _log_episode(self, record) -> None:
        s = self.learner.summary()
        row = {"env_steps": record.env_steps, "bridge_id": record.source, "episode": record.episode,
               "return": record.episode_return, "success": record.success, "length": record.length,
               "phase": record.phase, "q_calibration_gap": record.q_calibration_gap,
               "success_rate": s["success_rate"], "critic_loss": s["critic_loss"], "actor_loss": s["actor_loss"],
               "alpha": s["alpha"], "q_mean": s["q_mean"], "gradient_updates": s["gradient_updates"],
               "policy_version": s["policy_version"], "updates_per_second": s["updates_per_second"],
               "time": time.time()}
        self.metrics_file.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.log_episode(row)

    def _maybe_checkpoint(self) -> None:
        """Called with self.lock held."""
        every = self.p["checkpoint_every_env_steps"]
        if every and self.learner.env_steps % every == 0 and self.learner.env_steps > 0:
            self._checkpoint()

    def _maybe_snapshot(self) -> None:
        """The actor every snapshot_every_env_steps env steps, for evaluation off the control loop
        (porl-ros run evaluates each one in its own simulator); self.lock held."""
        every, steps = self.p["snapshot_every_env_steps"], self.learner.env_steps
        if every and steps % every == 0:
            save_actor(self.run_dir / SNAPSHOT_DIR / snapshot_name(steps), self.learner.agent.policy,
                       self.learner.policy_meta(self.env_id))

    def _checkpoint(self) -> None:
        """Full learner state (atomic), and the actor alone for deployment; self.lock held."""
        started = time.monotonic()
        path = self.store.write_checkpoint(self.learner.agent.state_tensors(), self.learner.replay,
                                           self.learner.bookkeeping_state(), extra={"env_id": self.env_id})
        save_actor(self.run_dir / "checkpoints" / "actor_latest", self.learner.agent.policy,
                   self.learner.policy_meta(self.env_id))
        self.get_logger().info(f"checkpoint {path.name} ({len(self.learner.replay)} transitions) in "
                               f"{time.monotonic() - started:.2f} s")

    def _sync_log(self) -> None:
        with self.lock:
            self.store.sync()

    def _finish(self) -> None:
        if self.done:
            return
        with self.lock:
            self.done = True
            if self.learner.actor_changed():
                self._publish_weights()
            save_actor(self.run_dir / "final_actor", self.learner.agent.policy, self.learner.policy_meta(self.env_id))
            summary = self.learner.summary()
        (self.run_dir / "learner_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.get_logger().info(f"run complete: {summary['env_steps']} env steps, {summary['gradient_updates']} "
                               f"critic updates, policy version {summary['policy_version']}; final actor in "
                               f"{self.run_dir / 'final_actor'}")
        self._publish_status()
        # Give the last ack/status/weights a moment to leave before the process exits.
        self.create_timer(1.0, self._exit)

    def _exit(self) -> None:
        self.finished = True

    def close(self) -> None:
        """Stop training and write a last full checkpoint (also on Ctrl-C / SIGTERM)."""
        if self.closed:
            return
        self.closed = True
        self.done = True
        if self.trainer is not None:
            self.trainer.join(timeout=5)
        with self.lock:
            if self.learner.env_steps == 0 and not self.store.checkpoints():
                # A start that stored nothing (e.g. a bridge refused its parameters) leaves no state:
                # otherwise the run dir would refuse the retry as "already holds a run".
                self.store.discard_if_empty()
            else:
                try:
                    self._checkpoint()
                except OSError as e:
                    self.get_logger().error(f"final checkpoint failed: {e}; the transition log still holds the "
                                            f"tail")
                self.store.close()
        self.metrics_file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def main(args=None) -> int:
    return run_node(LearnerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
