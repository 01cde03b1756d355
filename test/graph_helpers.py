"""Shared by the DDS graph tests: a tiny actor checkpoint, a fast learner, the
`porl-ros run` command line, and a node that watches the graph from the test process."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.executors import SingleThreadedExecutor

from porl_ros.core.checkpoint import save_actor
from porl_ros.core.networks import SquashedGaussianActor

ENV_ID = "metaworld/reach-v3"
OBS_DIM, ACT_DIM = 39, 4  # reach-v3's sizes
# A small, fast learner: what is tested is the plumbing, not the learning.
SMALL_LEARNER = ["learner:n_critics:=2", "learner:critic_hidden:=[64, 64]", "learner:batch_size:=32",
                 "learner:learning_starts:=32", "learner:weights_every_env_steps:=5",
                 "learner:checkpoint_every_env_steps:=0"]


def random_actor_checkpoint(tmp_path_factory) -> str:
    """An untrained (seeded) actor for ENV_ID: the graph only needs the right sizes."""
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, (64, 64), -np.ones(ACT_DIM), np.ones(ACT_DIM))
    path = tmp_path_factory.mktemp("ckpt") / "actor"
    save_actor(path, actor)
    return str(path)


def run_command(checkpoint: str, run_dir: Path, *options: str, params: list[str] = ()) -> list[str]:
    """`porl-ros run` on ENV_ID in this session's DDS domain; `params` are node:name:=value overrides."""
    cmd = [sys.executable, "-m", "porl_ros.cli", "run", "--env", ENV_ID, "--checkpoint", checkpoint,
           "--eval-episodes", "0", "--run-dir", str(run_dir), "--domain-id", os.environ["ROS_DOMAIN_ID"], *options]
    for param in params:
        cmd += ["--param", param]
    return cmd


class ObserverNode:
    """A node in its own rclpy context, spun by a background thread. A subclass creates its
    subscriptions in __init__ and then calls start(); close() undoes it all."""

    def __init__(self, name: str) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)

    def start(self, spin_timeout_s: float = 0.05) -> None:
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.running = True
        self.thread = threading.Thread(target=self._spin, args=(spin_timeout_s,), daemon=True)
        self.thread.start()

    def _spin(self, timeout_s: float) -> None:
        while self.running:
            self.executor.spin_once(timeout_sec=timeout_s)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
