"""Several bridges feeding one learner, over real DDS, each node its own OS process.

`porl-ros run --num-bridges 2` namespaces bridge_0 and bridge_1 (each with its own
exploration controller and policy server) around one learner; an observer in this test
process records the shared transition and weights topics and probes both policy servers.
"""

from __future__ import annotations

import collections
import json
import subprocess
import time

import numpy as np
import pytest

from graph_helpers import ACT_DIM, OBS_DIM, SMALL_LEARNER, ObserverNode, random_actor_checkpoint, run_command
from porl_ros import graph
from porl_ros.core.learner_state import LearnerStateStore
from porl_ros.nodes.conversions import to_float32_field
from porl_ros.nodes.qos import LATCHED_QOS, STREAM_QOS
from porl_ros_interfaces.msg import PolicyWeights, Transition
from porl_ros_interfaces.srv import GetAction

PROBE_STATE = np.linspace(-0.5, 0.5, OBS_DIM).astype(np.float32)
LEARNER = SMALL_LEARNER + ["learner:utd_ratio:=2", "learner:torch_threads:=1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return random_actor_checkpoint(tmp_path_factory)


class MultiBridgeObserver(ObserverNode):
    """Records transitions and weight versions; probes every bridge's GetAction service."""

    def __init__(self, num_bridges: int) -> None:
        super().__init__("porl_scale_observer")
        self.transitions: list[Transition] = []
        self.weight_versions: list[int] = []
        self.probes: dict[int, list[int]] = collections.defaultdict(list)  # bridge -> served versions
        self.node.create_subscription(Transition, "/porl/transition", self.transitions.append, STREAM_QOS)
        self.node.create_subscription(PolicyWeights, "/porl/policy_weights",
                                      lambda msg: self.weight_versions.append(msg.version), LATCHED_QOS)
        self.clients = {i: self.node.create_client(GetAction, f"/bridge_{i}/porl/get_action")
                        for i in range(num_bridges)}
        self.futures: dict[int, object] = {}
        self.node.create_timer(0.1, self._probe)
        self.start()

    def _probe(self) -> None:
        for bridge, client in self.clients.items():
            pending = self.futures.get(bridge)
            if (pending is not None and not pending.done()) or not client.service_is_ready():
                continue
            request = GetAction.Request(deterministic=True)
            request.state = to_float32_field(PROBE_STATE)
            future = client.call_async(request)
            future.add_done_callback(lambda f, b=bridge: self._on_probe(b, f))
            self.futures[bridge] = future

    def _on_probe(self, bridge: int, future) -> None:
        response = future.result()
        if response is not None and response.ok:
            self.probes[bridge].append(response.policy_version)


def test_graph_namespaces_bridges_and_seeds_them_apart():
    nodes = graph.finetune_graph(3)
    bridges = [spec for spec in nodes if spec.name == "sim_bridge"]
    assert [spec.namespace for spec in bridges] == ["bridge_0", "bridge_1", "bridge_2"]
    assert [graph.node_parameters(spec, {"seed": 7})["seed"] for spec in bridges] == [
        7, 7 + graph.BRIDGE_SEED_STRIDE, 7 + 2 * graph.BRIDGE_SEED_STRIDE]
    learner = graph.nodes_for_role(nodes, "learner")
    assert [spec.name for spec in learner] == ["learner", "recorder"]  # the bag is kept beside the learner
    assert learner[0].parameters["num_bridges"] == learner[1].parameters["num_bridges"] == 3
    robot_1 = graph.nodes_for_role(nodes, "robot", "1")
    assert sorted(spec.name for spec in robot_1) == ["exploration_controller", "policy_server", "sim_bridge"]
    assert {spec.namespace for spec in robot_1} == {"bridge_1"}
    with pytest.raises(ValueError, match="ids \\[5\\] are not in 0..2"):
        graph.nodes_for_role(nodes, "robot", "1,5")


def test_two_bridges_lockstep_feed_one_learner(tmp_path, checkpoint):
    steps, presample = 240, 120
    observer = MultiBridgeObserver(2)
    run_dir = tmp_path / "run"
    # 2 transition subscribers per bridge: the learner and this observer, so it sees every step
    # (no recorder: what is tested is the bridges' plumbing).
    cmd = run_command(checkpoint, run_dir, "--num-bridges", "2", "--no-record", "--episode-steps", "50",
                      "--steps", str(steps),
                      "--presample-steps", str(presample), "--param", "sim_bridge:min_transition_subscribers:=2",
                      params=LEARNER)
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=240, start_new_session=True)
        time.sleep(0.5)
    finally:
        observer.close()
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((run_dir / "logs").glob("*.log")))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + logs
    summary = json.loads((run_dir / "learner" / "learner_summary.json").read_text())
    assert summary["env_steps"] == steps
    assert summary["seq_gaps"] == 0 and summary["rejected_transitions"] == 0

    by_bridge = collections.defaultdict(list)
    for t in observer.transitions:
        by_bridge[t.bridge_id].append(t)
    assert sorted(by_bridge) == [0, 1], f"transitions from bridges {sorted(by_bridge)}"
    for bridge, items in by_bridge.items():
        seqs = [t.seq for t in items]
        # Lockstep: each bridge's sequence is gap-free and in order (the learner ends the run
        # at `steps` in total, so the split between the two is whatever the timing gave).
        assert seqs == list(range(len(seqs))), f"bridge {bridge}: seqs {seqs[:20]}..."
    # Once both are stepping they share the learner: a bridge whose controller came up a
    # second later starts later, but from then on neither may be starved.
    both_from = max(observer.transitions.index(items[0]) for items in by_bridge.values())
    shared = collections.Counter(t.bridge_id for t in observer.transitions[both_from:])
    for bridge in (0, 1):
        assert shared[bridge] >= sum(shared.values()) // 4, f"after both started: {dict(shared)}"
    # The learner stops at `steps` in total; the other bridge may have one transition in
    # flight then, which is acked with phase "done" and not stored.
    assert steps <= sum(len(items) for items in by_bridge.values()) <= steps + 1
    # Different seeds per bridge: their first episodes are different task variations.
    first = {b: np.asarray(items[0].state) for b, items in by_bridge.items()}
    assert not np.allclose(first[0], first[1])

    # The replay buffer records each transition's source bridge (read from the learner's
    # final checkpoint, written when it stopped).
    checkpoint_now, _ = LearnerStateStore(run_dir / "learner" / "state", OBS_DIM, ACT_DIM).latest_valid_checkpoint()
    assert checkpoint_now is not None, "the learner left no final checkpoint"
    sources = checkpoint_now.replay.column("source")
    assert len(sources) == steps
    stored = collections.Counter(sources.tolist())
    assert sorted(stored) == [0, 1]
    for bridge in (0, 1):
        assert len(by_bridge[bridge]) - 1 <= stored[bridge] <= len(by_bridge[bridge])

    # Both policy servers followed the learner's weight versions up to the same, final one.
    final = max(observer.weight_versions)
    assert final == summary["policy_version"] and final > 1
    for bridge in (0, 1):
        served = observer.probes[bridge]
        assert served and served == sorted(served), f"bridge {bridge} served versions {served}"
        assert set(served) <= set(observer.weight_versions) | {0}
        assert served[-1] == final, f"bridge {bridge}'s policy server ended at {served[-1]}, learner at {final}"
        used = [t.policy_version for t in by_bridge[bridge]]
        assert used == sorted(used) and used[-1] > 1, f"bridge {bridge} acted with versions {sorted(set(used))}"
