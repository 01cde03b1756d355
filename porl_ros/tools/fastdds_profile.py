"""Render config/fastdds_static_peers.xml for one machine of a split graph.

    python -m porl_ros.tools.fastdds_profile --local 192.0.2.10 --peer 192.0.2.20 -o fastdds.xml
    export FASTRTPS_DEFAULT_PROFILES_FILE=$PWD/fastdds.xml ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET

Discovery then goes by unicast to the listed addresses only (UDPv4, no multicast, no
shared memory). See docs/multi_host.md.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path
from typing import Optional, Sequence

from porl_ros import graph

TEMPLATE = graph.source_config_dir() / "fastdds_static_peers.xml"
DEFAULT_LEASE_S = 10  # Fast DDS's own default is 20 s; shorter notices a lost link sooner
DEFAULT_ANNOUNCE_S = 2


def _ipv4(text: str, field: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an IPv4 address") from None


def render_profile(local: str, peers: Sequence[str], lease_s: int = DEFAULT_LEASE_S,
                   announce_s: int = DEFAULT_ANNOUNCE_S) -> str:
    """The profile's XML for the machine at `local`, discovering `peers` (and itself)."""
    local = _ipv4(local, "local")
    addresses = [local] + [_ipv4(peer, "peer") for peer in peers if peer != local]
    if lease_s <= announce_s or announce_s < 1:
        raise ValueError(f"lease_s ({lease_s}) must exceed announce_s ({announce_s}) >= 1: a peer is "
                         f"dropped when no announcement arrives within the lease")
    locators = "\n".join(f"            <locator><udpv4><address>{a}</address></udpv4></locator>" for a in addresses)
    text = TEMPLATE.read_text()
    for key, value in {"@LOCAL_ADDRESS@": local, "@INITIAL_PEERS@": locators, "@LEASE_S@": str(int(lease_s)),
                       "@ANNOUNCE_S@": str(int(announce_s))}.items():
        text = text.replace(key, value)
    return text


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m porl_ros.tools.fastdds_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--local", required=True, help="this machine's address on the link to the other machines")
    p.add_argument("--peer", action="append", required=True, help="another machine's address (repeatable)")
    p.add_argument("--lease-s", type=int, default=DEFAULT_LEASE_S, help="drop a silent peer after this long")
    p.add_argument("--announce-s", type=int, default=DEFAULT_ANNOUNCE_S, help="announce this often")
    p.add_argument("-o", "--out", required=True, help="output XML file")
    args = p.parse_args(argv)
    try:
        text = render_profile(args.local, args.peer, args.lease_s, args.announce_s)
    except ValueError as e:
        p.error(str(e))
    Path(args.out).write_text(text)
    print(f"wrote {args.out}: export FASTRTPS_DEFAULT_PROFILES_FILE={Path(args.out).resolve()} "
          f"ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
