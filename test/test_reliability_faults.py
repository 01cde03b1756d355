"""Fault injection over real processes and DDS: nodes are SIGKILLed mid-run and restarted;
the run still finishes with every transition stored exactly once, and policy versions
never go back."""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import time

import numpy as np
import pytest
import rclpy

from graph_helpers import ACT_DIM, ENV_ID, OBS_DIM, ObserverNode, random_actor_checkpoint
from porl_ros.core.learner_state import LearnerStateStore
from porl_ros.nodes.qos import LATCHED_QOS, STATUS_QOS, STREAM_QOS
from porl_ros_interfaces.msg import PolicyWeights, TrainingStatus, Transition
from process_helpers import ProcessGroup, wait_until

# Enough steps after the learner is killed (<= 100) for the three later restarts to happen
# before the run ends: the graph steps at ~100-400 steps/s.
TOTAL, PRESAMPLE, EPISODE = 400, 60, 40
NODE_ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


class Observer(ObserverNode):
    """Every transition (arrival order) and every weights version, with arrival times."""

    def __init__(self) -> None:
        super().__init__("porl_fault_observer")
        self.transitions: list[Transition] = []
        self.versions: list[tuple[float, int]] = []
        self.statuses: list[TrainingStatus] = []
        self.node.create_subscription(Transition, "/porl/transition", self.transitions.append, STREAM_QOS)
        self.node.create_subscription(PolicyWeights, "/porl/policy_weights",
                                      lambda m: self.versions.append((time.monotonic(), m.version)), LATCHED_QOS)
        self.node.create_subscription(TrainingStatus, "/porl/status", self.statuses.append, STATUS_QOS)
        self.start()

    def max_seq(self) -> int:
        return max((t.seq for t in self.transitions), default=-1)


def node_cmd(module: str, **params) -> list[str]:
    cmd = [sys.executable, "-m", f"porl_ros.nodes.{module}", "--ros-args"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={json.dumps(v) if not isinstance(v, str) else v}"]
    return cmd


def test_graph_survives_sigkill_of_each_node(tmp_path, checkpoint):
    rng = random.Random()
    kill_learner_at = rng.randint(20, 100)  # a random point: before or after pre-sample ends (T=60)
    run_dir = tmp_path / "learner"
    learner_cmd = node_cmd("learner", checkpoint=checkpoint, run_dir=str(run_dir), total_env_steps=TOTAL,
                           presample_steps=PRESAMPLE, n_critics=2, critic_hidden=[64, 64], batch_size=32,
                           learning_starts=32, utd_ratio=1, weights_every_env_steps=5, checkpoint_every_env_steps=40,
                           torch_threads=1, status_rate_hz=5.0)
    bridge_cmd = node_cmd("sim_bridge", env_id=ENV_ID, max_episode_steps=EPISODE, checkpoint=checkpoint,
                          min_transition_subscribers=2, ack_timeout_s=1.0, action_timeout_s=1.5)
    controller_cmd = node_cmd("exploration_controller", checkpoint=checkpoint, request_timeout_s=2.0)
    server_cmd = node_cmd("policy_server", checkpoint=checkpoint)
    group, observer = ProcessGroup(), Observer()
    logs = {name: tmp_path / f"{name}.log" for name in ("learner", "learner2", "bridge", "bridge2", "controller",
                                                        "controller2", "server", "server2")}

    def failure(what: str) -> str:
        tails = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs.values() if p.exists())
        return f"{what} (kill_learner_at={kill_learner_at})\n{tails}"

    try:
        learner = group.start(learner_cmd, logs["learner"], env=NODE_ENV)
        server = group.start(server_cmd, logs["server"], env=NODE_ENV)
        controller = group.start(controller_cmd, logs["controller"], env=NODE_ENV)
        bridge = group.start(bridge_cmd, logs["bridge"], env=NODE_ENV)

        # 1. kill -9 the learner at a random step; restart it with resume.
        assert wait_until(lambda: observer.max_seq() >= kill_learner_at, 120), failure("run did not start")
        group.stop(learner, signal.SIGKILL)
        killed_at = time.monotonic()
        seen_at_kill = observer.max_seq()
        versions_before = [v for t, v in observer.versions if t < killed_at]
        time.sleep(1.5)  # the bridge keeps re-sending its unacknowledged transition meanwhile
        learner = group.start(learner_cmd + ["-p", "resume:=true"], logs["learner2"], env=NODE_ENV)
        assert wait_until(lambda: observer.max_seq() >= seen_at_kill + 10, 90), failure("no progress after resume")
        # The new learner's latched weights reach the observer once DDS has matched the two.
        wait_until(lambda: any(t > killed_at for t, _ in observer.versions), 30)
        versions_after = [v for t, v in observer.versions if t > killed_at]
        assert versions_after and versions_after[0] > max(versions_before), failure(
            f"policy version reused across resume: before {versions_before}, after {versions_after}")

        # 2. the policy server, then the controller: restarted, the graph goes on by itself.
        for name, proc, cmd in (("server", server, server_cmd), ("controller", controller, controller_cmd)):
            group.stop(proc, signal.SIGKILL)
            mark = observer.max_seq()
            group.start(cmd, logs[f"{name}2"], env=NODE_ENV)
            assert wait_until(lambda: observer.max_seq() >= mark + 5, 90), failure(f"stuck after {name} restart")

        # 3. the bridge: a new one starts from seq 0; the learner takes it as a bridge restart.
        group.stop(bridge, signal.SIGKILL)
        group.start(bridge_cmd, logs["bridge2"], env=NODE_ENV)
        assert wait_until(lambda: learner.poll() is not None, 150), failure("the learner did not finish")
        assert learner.returncode == 0, failure(f"learner exit code {learner.returncode}")
    finally:
        observer.close()
        group.close()

    summary = json.loads((run_dir / "learner_summary.json").read_text())
    assert summary["env_steps"] == TOTAL and summary["replay_size"] == TOTAL, failure(str(summary))
    assert summary["bridge_restarts"] == 1 and summary["rejected_transitions"] == 0, failure(str(summary))
    assert summary["phase"] == "finetune"
    versions = [v for _, v in observer.versions]
    assert versions == sorted(versions) and len(set(versions)) == len(versions), versions

    # The replay holds each transition the bridges sent exactly once, in order: split the
    # observed stream at the bridge restart (seq back to 0) and drop re-sent duplicates.
    streams, last = [[]], -1
    for t in observer.transitions:
        if t.seq == 0 and last > 0:
            streams.append([])
        if not streams[-1] or t.seq > streams[-1][-1].seq:
            streams[-1].append(t)
        last = t.seq
    expected = [np.asarray(t.state, dtype=np.float32) for stream in streams for t in stream][:TOTAL]
    store = LearnerStateStore(run_dir / "state", OBS_DIM, ACT_DIM)
    final = store.load_checkpoint(store.checkpoints()[0])  # written by close() at the end
    assert final.bookkeeping["env_steps"] == TOTAL
    assert np.array_equal(final.replay.column("obs"), np.stack(expected))
    assert "resumed from" in logs["learner2"].read_text()


def test_existing_run_dir_is_refused_without_resume(tmp_path, checkpoint):
    from rclpy.parameter import Parameter

    from porl_ros import runner
    from porl_ros.nodes.learner import LearnerNode
    from porl_ros.nodes.params import ParameterError

    state = tmp_path / "run" / "learner" / "state"
    store = LearnerStateStore(state, OBS_DIM, ACT_DIM)
    store.start_segment()  # a run that crashed before its first checkpoint: a log only
    store.close()
    with pytest.raises(SystemExit, match=r"already holds a run .*--resume"):
        runner.main(["--run-dir", str(tmp_path / "run"), "--checkpoint", checkpoint, "--eval-episodes", "0"])
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        params = [Parameter("checkpoint", value=checkpoint), Parameter("run_dir", value=str(tmp_path / "run" / "learner"))]
        run_dir = re.escape(str(tmp_path / "run" / "learner"))
        with pytest.raises(ParameterError, match=f"parameter 'run_dir': {run_dir} already holds learner state "
                                                 f".*resume:=true"):
            LearnerNode(context=context, parameter_overrides=params)
        # With resume it starts (nothing to load yet: a fresh start, not a crash).
        node = LearnerNode(context=context, parameter_overrides=params + [Parameter("resume", value=True)])
        assert node.learner.env_steps == 0 and node.learner.policy_version == 0
        node.close()
        node.destroy_node()
    finally:
        context.try_shutdown()
