"""What crosses the network per env step, and how long a weights broadcast takes.

    scripts/porl-env python benchmarks/bench_network.py [--env metaworld/push-v3] [--steps 600]
        [--broadcasts 20] [--json out.json]

Measures, in one run:
  (a) the serialized size (rclpy.serialization.serialize_message, i.e. the CDR payload
      DDS sends, without RTPS/UDP/IP headers) of each message of one env step:
      Observation, Action, Transition, TransitionAck, and of one PolicyWeights broadcast
      for the actor size given (default 256x256, the paper's);
  (b) the weight broadcasts per env step a real lockstep run makes (`porl-ros run` with
      a small critic ensemble and the default weights_every_env_steps), and status
      messages per env step; together: bytes per env step, all topics and only the ones
      that cross the link when learner and robot are on different machines;
  (c) weight-broadcast latency over DDS between processes, averaged over --broadcasts:
      publish -> receipt by a plain subscriber, and publish -> the real policy server
      swapping the new actor in (its "now serving policy version N" log line).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(10, 99)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402

from porl_ros.nodes.settings import resolve  # noqa: E402
from porl_ros.core.checkpoint import actor_to_bytes, save_actor  # noqa: E402
from porl_ros.core.networks import SquashedGaussianActor  # noqa: E402
from porl_ros.envs.registry import make_env  # noqa: E402
from porl_ros.nodes.conversions import to_float32_field, to_uint8_field  # noqa: E402
from porl_ros.nodes.qos import LATCHED_QOS  # noqa: E402
from porl_ros_interfaces.msg import (Action, Observation, PolicyWeights, TrainingStatus, Transition,  # noqa: E402
                                     TransitionAck)

LOG_LINE = re.compile(r"^\[\w+\] \[(\d+\.\d+)\] \[[^\]]+\]: now serving policy version (\d+)")
# Topics between the bridge and its controller: they stay on the robot's machine in a split graph.
ROBOT_LOCAL = ("observation", "action")

SUBSCRIBER = r"""
import sys, time, rclpy
from porl_ros.nodes.qos import LATCHED_QOS
from porl_ros_interfaces.msg import PolicyWeights
rclpy.init()
node = rclpy.create_node("bench_weights_subscriber")
def on_weights(msg):
    print(f"{msg.version} {time.time():.6f} {len(msg.data)}", flush=True)
node.create_subscription(PolicyWeights, "/porl/policy_weights", on_weights, LATCHED_QOS)
try:
    rclpy.spin(node)
except BaseException:  # stopped by SIGINT when the measurement is over
    pass
"""


def message_sizes(obs_dim: int, act_dim: int, actor: SquashedGaussianActor) -> dict[str, int]:
    """Serialized bytes of each message kind, filled as the nodes fill them."""
    rng = np.random.default_rng(0)
    state, next_state = rng.standard_normal(obs_dim), rng.standard_normal(obs_dim)
    action = rng.uniform(-1, 1, act_dim)
    obs = Observation(bridge_id=0, episode=12, step=34, required_policy_version=7, phase="finetune")
    obs.header.frame_id = "world"
    obs.state = to_float32_field(state)
    act = Action(bridge_id=0, episode=12, step=34, exploratory=False, policy_version=7)
    act.header.frame_id = "world"
    act.action = to_float32_field(action)
    tr = Transition(bridge_id=0, seq=1234, episode=12, step=34, reward=0.5, terminated=False, truncated=False,
                    success=False, exploratory=False, policy_version=7)
    tr.header.frame_id = "world"
    tr.state, tr.action, tr.next_state = (to_float32_field(state), to_float32_field(action),
                                          to_float32_field(next_state))
    ack = TransitionAck(bridge_id=0, seq=1234, policy_version=7, phase="finetune")
    status = TrainingStatus(phase="finetune")
    weights = PolicyWeights(version=7, format="safetensors")
    weights.data = to_uint8_field(actor_to_bytes(actor))
    return {name: len(serialize_message(msg)) for name, msg in
            [("observation", obs), ("action", act), ("transition", tr), ("transition_ack", ack),
             ("training_status", status), ("policy_weights", weights)]}


def observed_rates(checkpoint: str, env_id: str, steps: int, presample: int, work: Path) -> dict:
    """Weight broadcasts and status messages per env step in a real lockstep run."""
    run_dir = work / "run"
    cmd = [sys.executable, "-m", "porl_ros.cli", "run", "--env", env_id, "--checkpoint", checkpoint,
           "--eval-episodes", "0", "--episode-steps", "100", "--run-dir", str(run_dir), "--steps", str(steps),
           "--presample-steps", str(presample), "--domain-id", os.environ["ROS_DOMAIN_ID"],
           # Small critics keep this quick on a laptop; weights_every_env_steps stays the default.
           "--param", "learner:n_critics:=2", "--param", "learner:critic_hidden:=[64, 64]",
           "--param", "learner:utd_ratio:=2", "--param", "learner:batch_size:=64",
           "--param", "learner:learning_starts:=64", "--param", "learner:checkpoint_every_env_steps:=0",
           "--param", "learner:torch_threads:=1"]
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, start_new_session=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"porl-ros run failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    summary = json.loads((run_dir / "learner" / "learner_summary.json").read_text())
    learner_settings = resolve("learner", "cpu")[1]
    # Version 0 is the latched initial actor (sent once per run); later versions are the broadcasts.
    broadcasts = int(summary["policy_version"])
    return {"env_steps": int(summary["env_steps"]), "presample_steps": presample,
            "finetune_steps": int(summary["env_steps"]) - presample, "weight_broadcasts": broadcasts,
            "weights_per_env_step": broadcasts / summary["env_steps"],
            "weights_per_finetune_step": broadcasts / max(1, summary["env_steps"] - presample),
            "run_seconds": round(seconds, 1), "env_steps_per_second": summary.get("env_steps_per_second"),
            "weights_every_env_steps": learner_settings.weights_every_env_steps,
            "max_weights_rate_hz": learner_settings.max_weights_rate_hz}


def weight_latency(checkpoint: str, actor: SquashedGaussianActor, broadcasts: int, work: Path) -> dict:
    """Publish -> plain subscriber receipt, and publish -> policy server swapped, in ms."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server_log = work / "policy_server.log"
    procs = [subprocess.Popen([sys.executable, "-c", SUBSCRIBER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env, start_new_session=True),
             subprocess.Popen([sys.executable, "-m", "porl_ros.nodes.policy_server", "--ros-args",
                               "-p", f"checkpoint:={checkpoint}"], stdout=open(server_log, "w"),
                              stderr=subprocess.STDOUT, env=env, start_new_session=True)]
    rclpy.init()
    node = rclpy.create_node("bench_weights_publisher")
    pub = node.create_publisher(PolicyWeights, "/porl/policy_weights", LATCHED_QOS)
    published: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the subscriber and policy server never matched the weights topic")
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(1.0)
        blob = actor_to_bytes(actor)
        for version in range(1, broadcasts + 1):
            msg = PolicyWeights(version=version, format="safetensors")
            msg.data = to_uint8_field(blob)  # conversion outside the timed span, as the learner's is
            msg.header.stamp = node.get_clock().now().to_msg()
            published[version] = time.time()
            pub.publish(msg)
            time.sleep(0.5)  # well apart: each broadcast measured alone
        time.sleep(2.0)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        for proc in procs:
            try:
                os.killpg(proc.pid, 2)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, 9)
    received = {}
    for line in procs[0].stdout.read().splitlines():
        version, at, _ = line.split()
        received.setdefault(int(version), float(at))
    swapped = {}
    for line in server_log.read_text().splitlines():
        match = LOG_LINE.match(line.strip())
        if match:
            swapped[int(match.group(2))] = float(match.group(1))

    def stats(times: dict[int, float]) -> dict:
        ms = [1000 * (times[v] - published[v]) for v in published if v in times]
        return {"count": len(ms), "of": len(published), "mean_ms": round(float(np.mean(ms)), 2) if ms else None,
                "median_ms": round(float(np.median(ms)), 2) if ms else None,
                "max_ms": round(float(np.max(ms)), 2) if ms else None}

    return {"to_subscriber": stats(received), "to_policy_server_swap": stats(swapped)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="metaworld/push-v3")
    p.add_argument("--actor-hidden", default="256,256", help="actor layer sizes (default the paper's 256,256)")
    p.add_argument("--steps", type=int, default=600, help="env steps of the lockstep run measuring rates")
    p.add_argument("--presample-steps", type=int, default=200)
    p.add_argument("--broadcasts", type=int, default=20, help="weight broadcasts timed")
    p.add_argument("--json", default="", help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    env = make_env(args.env)
    spec = env.spec
    env.close()
    hidden = tuple(int(x) for x in args.actor_hidden.split(","))
    torch.manual_seed(0)
    actor = SquashedGaussianActor(spec.obs_dim, spec.act_dim, hidden, spec.action_low, spec.action_high)
    sizes = message_sizes(spec.obs_dim, spec.act_dim, actor)
    with tempfile.TemporaryDirectory(prefix="porl_bench_net_") as tmp:
        work = Path(tmp)
        checkpoint = str(work / "actor")
        save_actor(checkpoint, actor)
        latency = weight_latency(checkpoint, actor, args.broadcasts, work)
        rates = observed_rates(checkpoint, args.env, args.steps, args.presample_steps, work)

    status_per_step = 2.0 / rates["env_steps_per_second"] if rates.get("env_steps_per_second") else 0.0
    weights_per_step = rates["weights_per_env_step"]
    per_step = {name: sizes[name] for name in ("observation", "action", "transition", "transition_ack")}
    per_step["policy_weights (amortised)"] = sizes["policy_weights"] * weights_per_step
    per_step["training_status (amortised, 2 Hz)"] = sizes["training_status"] * status_per_step
    total = sum(per_step.values())
    crossing = sum(v for k, v in per_step.items() if not k.startswith(ROBOT_LOCAL))
    finetune_crossing = (sizes["transition"] + sizes["transition_ack"]
                         + sizes["policy_weights"] * rates["weights_per_finetune_step"])
    results = {"env": args.env, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim, "actor_hidden": list(hidden),
               "serialized_bytes": sizes, "rates": rates, "bytes_per_env_step": per_step,
               "total_bytes_per_env_step": round(total, 1),
               "split_link_bytes_per_env_step": round(crossing, 1),
               "split_link_bytes_per_finetune_step": round(finetune_crossing, 1),
               "weight_latency": latency}

    print(f"\n{args.env}: obs {spec.obs_dim}, act {spec.act_dim}, actor {'x'.join(map(str, hidden))}")
    print("serialized message sizes (CDR payload, bytes):")
    for name, size in sizes.items():
        print(f"  {name:<18} {size:>9,}")
    print(f"lockstep run of {rates['env_steps']} steps ({rates['presample_steps']} pre-sample): "
          f"{rates['weight_broadcasts']} weight broadcasts = {weights_per_step:.3f}/env step "
          f"({rates['weights_per_finetune_step']:.3f}/fine-tune step), {rates['env_steps_per_second']:.1f} steps/s")
    print("bytes per env step:")
    for name, value in per_step.items():
        print(f"  {name:<36} {value:>10,.1f}")
    print(f"  {'total (all topics)':<36} {total:>10,.1f}")
    print(f"  {'across the link (learner | robot)':<36} {crossing:>10,.1f}   (fine-tune phase: "
          f"{finetune_crossing:,.1f})")
    for name, s in latency.items():
        print(f"weights publish -> {name}: mean {s['mean_ms']} ms, median {s['median_ms']} ms, "
              f"max {s['max_ms']} ms ({s['count']}/{s['of']} broadcasts)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
