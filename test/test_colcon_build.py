"""`colcon build` of this repository in a fresh ROS 2 workspace, with the pip-installed
ROS 2 (.venv) as the underlay: both packages build, install and import."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_colcon_builds_both_packages(tmp_path):
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.prefix))}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env['PATH']}"
    result = subprocess.run(["bash", str(ROOT / "scripts" / "colcon_check.sh"), str(tmp_path / "ws")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "colcon build ok" in result.stdout
    install = tmp_path / "ws" / "install"
    assert (install / "porl_ros_interfaces" / "share" / "porl_ros_interfaces" / "package.xml").is_file()
    for node in ("sim_bridge", "exploration_controller", "policy_server", "learner"):
        assert (install / "porl_ros" / "lib" / "porl_ros" / node).is_file(), f"{node} not installed for ros2 run"
    assert (install / "porl_ros" / "share" / "porl_ros" / "config").is_dir()
