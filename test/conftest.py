"""Test isolation for DDS: every test session gets its own ROS_DOMAIN_ID (unless the
caller chose one) and localhost-only discovery, set before rclpy is imported anywhere."""

import os
import random
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(10, 99)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("PORL_DISCOVERY_RANGE_DEFAULT", None)  # set here on purpose: not scripts/porl-env's default
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["PYTHONUNBUFFERED"] = "1"

@pytest.fixture
def one_torch_thread():
    """Small networks on a shared 2-core machine: one torch thread, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TEST_DIR = Path(__file__).resolve().parent
if str(TEST_DIR) not in sys.path:
    sys.path.insert(0, str(TEST_DIR))
