"""Two "hosts" on this machine: Linux network namespaces joined by a veth pair.

Each namespace has its own network stack (interfaces, routes, ports), so DDS between them
crosses a real link that a test can cut (`ip link set ... down`) and restore. Needs root
and iproute2; everything made here is deleted on exit, also when the test fails.
Private addresses on this veth pair exist only inside these namespaces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SUBNET_PREFIX = "10.233.71"
LEARNER_ADDRESS = f"{SUBNET_PREFIX}.1"
ROBOT_ADDRESS = f"{SUBNET_PREFIX}.2"
APT_INSTALL = "apt-get install -y iproute2"


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")


def netns_unavailable_reason() -> str:
    """Why namespaces cannot be made here ('' when they can): checked by making one."""
    if shutil.which("ip") is None:
        return f"the `ip` command (iproute2) is missing: {APT_INSTALL}"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"porlprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as e:
        return str(e)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return ""


@dataclass
class TwoHosts:
    """The learner host and the robot host; `run_prefix(host)` runs a command inside one."""

    learner_ns: str
    robot_ns: str
    robot_link: str  # the robot end of the veth pair

    def run_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def cut(self) -> None:
        """Take the robot's end of the link down (its address stays, nothing gets through)."""
        _ip("-n", self.robot_ns, "link", "set", self.robot_link, "down")

    def restore(self) -> None:
        _ip("-n", self.robot_ns, "link", "set", self.robot_link, "up")


@contextlib.contextmanager
def two_hosts(tag: str = "") -> Iterator[TwoHosts]:
    """Namespaces porl<pid><tag>l / ...r joined by a veth pair; deleted again on exit."""
    base = f"porl{os.getpid()}{tag}"
    learner_ns, robot_ns = f"{base}l", f"{base}r"
    learner_link, robot_link = f"vl{os.getpid()}{tag}"[:15], f"vr{os.getpid()}{tag}"[:15]
    made: list[str] = []
    try:
        for ns in (learner_ns, robot_ns):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", learner_link, "type", "veth", "peer", "name", robot_link)
        for ns, link, address in ((learner_ns, learner_link, LEARNER_ADDRESS), (robot_ns, robot_link, ROBOT_ADDRESS)):
            _ip("link", "set", link, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield TwoHosts(learner_ns, robot_ns, robot_link)
    finally:
        # Deleting a namespace deletes the veth end in it, and with it the pair.
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        # A pair made but not yet moved into a namespace is still here (no-op otherwise).
        subprocess.run(["ip", "link", "del", learner_link], capture_output=True, timeout=10)


def write_profiles(directory: Path, lease_s: int, announce_s: int) -> dict[str, Path]:
    """The Fast DDS profile of each host (config/fastdds_static_peers.xml rendered)."""
    from porl_ros.tools.fastdds_profile import render_profile

    paths = {}
    for host, local, peer in (("learner", LEARNER_ADDRESS, ROBOT_ADDRESS), ("robot", ROBOT_ADDRESS, LEARNER_ADDRESS)):
        paths[host] = directory / f"fastdds_{host}.xml"
        paths[host].write_text(render_profile(local, [peer], lease_s=lease_s, announce_s=announce_s))
    return paths


def host_env(profile: Path) -> dict[str, str]:
    """Environment of a node on one host: the profile, and discovery beyond localhost."""
    return {"FASTRTPS_DEFAULT_PROFILES_FILE": str(profile), "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
            "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "OMP_NUM_THREADS": "1"}
