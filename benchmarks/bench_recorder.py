"""What recording a run costs per env step: bytes on disk and CPU time.

    scripts/porl-env python benchmarks/bench_recorder.py [--steps 3000] [--json out.json]

One env step of a lockstep sim run puts on the recorded topics: an Observation, an Action
and a Transition (reach-v3 sizes: 39 observation values, 4 actions); and at their rates
(assumed 100 env steps/s, the sim graph with learning on a GPU is slower, so this errs high
on the rate-driven topics): a MarkerArray and a JointState every 10 steps (viz_rate_hz 10),
a TrainingStatus every 50 (2 Hz) and a DiagnosticArray every 20 (5 nodes at 1 Hz).

  (a) the writer alone (porl_ros.monitoring.bag.BagWriter, in this process): CPU time and
      bytes in the .mcap file per env step;
  (b) the recorder node as `porl-ros run` starts it (own process, serialized DDS
      subscriptions): its CPU time (rusage of the child) for --steps steps published over
      DDS, minus a run with no steps (start-up and idle), per step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(10, 99)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import rclpy.time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from porl_ros import graph  # noqa: E402
from porl_ros.monitoring.bag import BagWriter  # noqa: E402
from porl_ros.nodes.qos import STATUS_QOS, STREAM_QOS  # noqa: E402
from porl_ros.nodes.visualization import VIZ_QOS, build_markers  # noqa: E402
from porl_ros_interfaces.msg import Action, Observation, TrainingStatus, Transition  # noqa: E402

OBS, ACT = 39, 4
PERIODS = {"markers": 10, "joints": 10, "status": 50, "diagnostics": 20}


def step_messages(step: int) -> list[tuple[str, object]]:
    """(topic, message) of one env step, with the rate-driven topics at their periods."""
    rng = np.random.default_rng(step)
    state, action = rng.normal(size=OBS).astype(np.float32), rng.uniform(-1, 1, ACT).astype(np.float32)
    out = [("/" + graph.OBSERVATION_TOPIC, Observation(episode=step // 500, step=step % 500, state=state.tolist())),
           ("/" + graph.ACTION_TOPIC, Action(episode=step // 500, step=step % 500, action=action.tolist())),
           (graph.TRANSITION_TOPIC, Transition(seq=step, state=state.tolist(), action=action.tolist(), reward=0.5,
                                               next_state=state.tolist(), policy_version=step // 10))]
    if step % PERIODS["markers"] == 0:
        points = {"end_effector": state[:3], "goal": state[-3:]}
        out.append((graph.MARKERS_TOPIC, build_markers("world", rclpy.time.Time().to_msg(), points, action=action,
                                                       text=f"episode {step // 500} step {step % 500}")))
        out.append(("/" + graph.SIM_JOINT_STATES_TOPIC, JointState(name=[f"joint_{i}" for i in range(7)],
                                                                   position=[0.1] * 7, velocity=[0.0] * 7)))
    if step % PERIODS["status"] == 0:
        out.append((graph.STATUS_TOPIC, TrainingStatus(phase="finetune", env_steps=step)))
    if step % PERIODS["diagnostics"] == 0:
        values = [KeyValue(key=f"value_{i}", value=f"{i * 1.5:.3f}") for i in range(8)]
        out.append((graph.DIAGNOSTICS_TOPIC, DiagnosticArray(status=[DiagnosticStatus(
            level=b"\x00", name="porl/learner", message="ok", values=values)])))
    return out


def topic_types(num_bridges: int = 1) -> dict[str, str]:
    return {topic: type_name for topic, type_name, _ in graph.recorded_topics(num_bridges)}


def bench_writer(steps: int) -> dict:
    types = topic_types()
    messages = [[(t, serialize_message(m)) for t, m in step_messages(s)] for s in range(steps)]
    with tempfile.TemporaryDirectory() as tmp:
        bag = BagWriter(Path(tmp) / "bag")
        for topic, type_name in types.items():
            bag.add_topic(topic, type_name)
        started = time.process_time()
        for step in messages:
            for topic, data in step:
                bag.write(topic, data)
        bag.close()
        cpu = time.process_time() - started
        size = bag.path.stat().st_size
    payload = sum(len(d) for step in messages for _, d in step)
    return {"steps": steps, "cpu_us_per_step": 1e6 * cpu / steps, "file_bytes_per_step": size / steps,
            "cdr_bytes_per_step": payload / steps, "compression_ratio": payload / size}


def recorder_cpu(steps: int, tmp: Path) -> float:
    """CPU seconds (user + system) of a recorder process that records `steps` steps."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_recorder_publisher", context=context)
    kinds = {graph.MARKERS_TOPIC: VIZ_QOS, "/" + graph.SIM_JOINT_STATES_TOPIC: VIZ_QOS,
             graph.STATUS_TOPIC: STATUS_QOS, graph.DIAGNOSTICS_TOPIC: STATUS_QOS}
    publishers = {}
    for topic, msg in step_messages(0):
        publishers[topic] = node.create_publisher(type(msg), topic, kinds.get(topic, STREAM_QOS))
    proc = subprocess.Popen([sys.executable, "-m", "porl_ros.nodes.recorder", "--ros-args",
                             "-p", f"bag_dir:={tmp / f'bag_{steps}'}", "-p", "diagnostics_rate_hz:=0.0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while publishers[graph.TRANSITION_TOPIC].get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for step in range(steps):
            for topic, msg in step_messages(step):
                publishers[topic].publish(msg)
            if step % 100 == 0:
                time.sleep(0.01)  # let the reliable queue drain
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        _, _, usage = os.wait4(proc.pid, 0)
        node.destroy_node()
        context.try_shutdown()
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    result = {"writer": bench_writer(args.steps)}
    with tempfile.TemporaryDirectory() as tmp:
        idle = recorder_cpu(0, Path(tmp))
        busy = recorder_cpu(args.steps, Path(tmp))
    result["recorder_process"] = {"steps": args.steps, "idle_cpu_s": idle, "busy_cpu_s": busy,
                                  "cpu_us_per_step": 1e6 * (busy - idle) / args.steps}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
