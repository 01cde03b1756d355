"""Env steps per second of the full ROS 2 graph on loopback, beside the same loop in-process.

    scripts/porl-env python benchmarks/bench_graph.py [--env metaworld/reach-v3] [--steps 3000]

Measures, in one run:
  (a) the graph in lockstep with learning switched off (transport + simulator alone),
  (b) the graph in lockstep at UTD 16 (the learner's CPU-profile-sized ensemble),
and the same two loops in one process without ROS (simulator + actor + epsilon-greedy +
PorlLearner), then prints the ratios: what the ROS transport costs.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from porl_ros import graph  # noqa: E402
from porl_ros.core.checkpoint import save_actor  # noqa: E402
from porl_ros.core.config import PorlConfig  # noqa: E402
from porl_ros.core.exploration import ActionChooser, ExplorationConfig  # noqa: E402
from porl_ros.core.learner import build_learner  # noqa: E402
from porl_ros.core.networks import SquashedGaussianActor  # noqa: E402
from porl_ros.core.rollout import EnvStepper, EpisodeSettings, fine_tuning_step, open_env  # noqa: E402
from porl_ros.envs.registry import make_env  # noqa: E402

EPISODE_STEPS = 200
NO_LEARNING = 10**9  # learning_starts beyond the run: the learner only stores


def learner_settings(utd: int, learning: bool) -> dict:
    return {"n_critics": 4, "critic_hidden": [128, 128], "batch_size": 128, "utd_ratio": utd,
            "learning_starts": 256 if learning else NO_LEARNING, "presample_steps": 0,
            "weights_every_env_steps": 10, "torch_threads": 1}


def graph_rate(env_id: str, checkpoint: str, steps: int, settings: dict) -> float:
    """Steps/s of `porl-ros run` over the middle of the run, read from TrainingStatus."""
    import rclpy

    from porl_ros.nodes.qos import STATUS_QOS
    from porl_ros_interfaces.msg import TrainingStatus

    domain = str(random.randint(10, 99))
    os.environ["ROS_DOMAIN_ID"] = domain
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("porl_bench_status", context=context)
    samples: list[tuple[float, int]] = []
    node.create_subscription(TrainingStatus, graph.STATUS_TOPIC,
                             lambda m: samples.append((time.monotonic(), m.env_steps)), STATUS_QOS)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    running = True

    def spin():
        while running:
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory() as run_dir:
        cmd = [sys.executable, "-m", "porl_ros.cli", "run", "--env", env_id, "--checkpoint", checkpoint,
               "--steps", str(steps), "--eval-episodes", "0", "--episode-steps", str(EPISODE_STEPS),
               "--run-dir", run_dir, "--domain-id", domain, "--param", "learner:status_rate_hz:=10.0"]
        for key, value in settings.items():
            cmd += ["--param", f"learner:{key}:={value}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
    running = False
    thread.join()
    executor.shutdown()
    node.destroy_node()
    context.try_shutdown()
    if result.returncode != 0:
        raise SystemExit(f"graph run failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    # The middle of the run: skip start-up and the final flush.
    middle = [(t, n) for t, n in samples if steps * 0.2 <= n <= steps * 0.9]
    (t0, n0), (t1, n1) = middle[0], middle[-1]
    return (n1 - n0) / (t1 - t0)


def in_process_rate(env_id: str, actor: SquashedGaussianActor, steps: int, settings: dict) -> float:
    """The same loop with no ROS: the core's fine_tuning_step (chooser, env stepper, PorlLearner)."""
    torch.set_num_threads(1)
    config = PorlConfig(n_critics=settings["n_critics"], critic_hidden=tuple(settings["critic_hidden"]),
                        batch_size=settings["batch_size"], utd_ratio=settings["utd_ratio"],
                        learning_starts=settings["learning_starts"], presample_steps=0, device="cpu")
    learner = build_learner(actor, config, replay_capacity=steps + 1)
    stepper = EnvStepper(open_env(env_id, EpisodeSettings(max_episode_steps=EPISODE_STEPS), 0), 0)
    chooser = ActionChooser(ExplorationConfig(finetune_epsilon=0.1), stepper.spec.action_low, stepper.spec.action_high, seed=0)
    policy = lambda obs, deterministic: learner.agent.actor.act(obs, deterministic=deterministic)  # noqa: E731
    started = None
    for step in range(steps):
        if step == int(steps * 0.2):
            started = time.monotonic()
        fine_tuning_step(learner, chooser, stepper, policy)
    stepper.close()
    return (steps - int(steps * 0.2)) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="metaworld/reach-v3")
    parser.add_argument("--steps", type=int, default=3000, help="env steps per measurement without learning")
    parser.add_argument("--learning-steps", type=int, default=1200, help="env steps per measurement at UTD 16")
    args = parser.parse_args()

    env = make_env(args.env, max_episode_steps=EPISODE_STEPS)
    spec = env.spec
    env.close()
    torch.manual_seed(0)
    actor = SquashedGaussianActor(spec.obs_dim, spec.act_dim, (256, 256), spec.action_low, spec.action_high)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = os.path.join(tmp, "actor")
        save_actor(checkpoint, actor)
        rows = []
        for label, steps, settings in (("(a) learning off", args.steps, learner_settings(16, False)),
                                       ("(b) UTD 16", args.learning_steps, learner_settings(16, True))):
            graph = graph_rate(args.env, checkpoint, steps, settings)
            local = in_process_rate(args.env, actor, steps, settings)
            rows.append((label, graph, local))
    print(f"\nporl_ros graph benchmark on {args.env} ({os.cpu_count()} CPU cores, lockstep, "
          f"4 processes on loopback, learner: 4 critics 128x128, batch 128)")
    print(f"{'':18} {'graph steps/s':>14} {'in-process':>11} {'graph/in-process':>17} {'transport cost':>15}")
    for label, graph, local in rows:
        print(f"{label:18} {graph:14.1f} {local:11.1f} {graph / local:17.2f} {1 - graph / local:15.1%}")


if __name__ == "__main__":
    main()
