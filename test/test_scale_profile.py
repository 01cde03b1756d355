"""The Fast DDS profile for a graph split across machines (config/fastdds_static_peers.xml)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from porl_ros.tools import fastdds_profile

NS = {"dds": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


def test_profile_discovers_only_the_listed_peers_over_udp(tmp_path):
    out = tmp_path / "fastdds.xml"
    assert fastdds_profile.main(["--local", "192.0.2.10", "--peer", "192.0.2.20", "--lease-s", "5",
                                 "--announce-s", "1", "-o", str(out)]) == 0
    root = ET.parse(out).getroot()
    assert "@" not in out.read_text().split("-->", 1)[1], "a placeholder was left unfilled"
    participant = root.find(".//dds:participant", NS)
    assert participant.get("is_default_profile") == "true"
    rtps = participant.find("dds:rtps", NS)
    assert rtps.find("dds:useBuiltinTransports", NS).text == "false"  # no shared memory
    transport = root.find(".//dds:transport_descriptor", NS)
    assert transport.find("dds:type", NS).text == "UDPv4"
    assert rtps.find("dds:userTransports/dds:transport_id", NS).text == transport.find("dds:transport_id", NS).text
    builtin = rtps.find("dds:builtin", NS)
    peers = [a.text for a in builtin.findall("dds:initialPeersList/dds:locator/dds:udpv4/dds:address", NS)]
    assert peers == ["192.0.2.10", "192.0.2.20"]  # itself too: nodes on one machine find each other
    # Only a unicast metatraffic locator: no multicast discovery.
    assert builtin.find("dds:metatrafficMulticastLocatorList", NS) is None
    assert [a.text for a in builtin.findall("dds:metatrafficUnicastLocatorList//dds:address", NS)] == ["192.0.2.10"]
    assert builtin.find("dds:discovery_config/dds:leaseDuration/dds:sec", NS).text == "5"


def test_profile_refuses_bad_addresses_and_lease_naming_the_field():
    with pytest.raises(ValueError, match="peer: 'robot.local' is not an IPv4 address"):
        fastdds_profile.render_profile("192.0.2.10", ["robot.local"])
    with pytest.raises(ValueError, match="local: '300.1.1.1'"):
        fastdds_profile.render_profile("300.1.1.1", ["192.0.2.20"])
    with pytest.raises(ValueError, match="lease_s"):
        fastdds_profile.render_profile("192.0.2.10", ["192.0.2.20"], lease_s=1, announce_s=1)
