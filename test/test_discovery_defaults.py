"""ROS_AUTOMATIC_DISCOVERY_RANGE: scripts/porl-env's LOCALHOST default and the runner's
SUBNET default for `--role learner|robot` agree (the wrapper's default gives way to the
multi-host roles; a value the user set is always kept)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from porl_ros.runner import WRAPPER_DEFAULT_MARK, discovery_range

ROOT = Path(__file__).resolve().parents[1]
CHECK = ("import os, sys; from porl_ros.runner import discovery_range; "
         "print(os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE'), os.environ.get('PORL_DISCOVERY_RANGE_DEFAULT'), "
         "discovery_range(sys.argv[1], os.environ)[0])")


def _through_wrapper(role: str, user_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", WRAPPER_DEFAULT_MARK)}
    if user_value is not None:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = user_value
    out = subprocess.run([str(ROOT / "scripts" / "porl-env"), "python", "-c", CHECK, role], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return out.split()


@pytest.mark.parametrize("role, user_value, expected", [
    ("learner", None, ["LOCALHOST", "1", "SUBNET"]),  # the bug: LOCALHOST reached multi-host roles
    ("robot", None, ["LOCALHOST", "1", "SUBNET"]),
    ("all", None, ["LOCALHOST", "1", "LOCALHOST"]),
    ("learner", "LOCALHOST", ["LOCALHOST", "None", "LOCALHOST"]),  # the user's own choice is kept
    ("all", "SUBNET", ["SUBNET", "None", "SUBNET"]),
])
def test_wrapper_default_and_runner_default_agree(role, user_value, expected):
    assert _through_wrapper(role, user_value) == expected


def test_discovery_range_rules():
    assert discovery_range("learner", {}) == ("SUBNET", "")
    assert discovery_range("all", {}) == ("LOCALHOST", "")
    value, note = discovery_range("robot", {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", WRAPPER_DEFAULT_MARK: "1"})
    assert value == "SUBNET" and "porl-env" in note
    assert discovery_range("robot", {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}) == ("LOCALHOST", "")
    assert discovery_range("all", {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", WRAPPER_DEFAULT_MARK: "1"}) == \
        ("LOCALHOST", "")
