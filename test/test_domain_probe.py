"""A domain already used by another porl_ros graph is seen before a run takes it (issue 17.6):
a random pick moves on, an explicit --domain-id is kept with a warning."""

from __future__ import annotations

import argparse
import os
import sys

import pytest

from porl_ros import runner
from porl_ros.nodes.domain_probe import nodes_on_domain
from process_helpers import ProcessGroup, wait_until

# A stand-in for another run's learner: a node named like the graph's, spinning until SIGINT.
OTHER_RUN = """
import rclpy, signal, sys
rclpy.init()
node = rclpy.create_node("learner")
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
rclpy.spin(node)
"""


@pytest.fixture
def other_run():
    group = ProcessGroup()
    proc = group.start([sys.executable, "-c", OTHER_RUN])
    domain = int(os.environ["ROS_DOMAIN_ID"])
    try:
        assert wait_until(lambda: "/learner" in nodes_on_domain(domain, wait_s=0.5), timeout=20), \
            "the stand-in learner was never discovered"
        yield domain, proc, group
    finally:
        group.close()


def args(domain_id):
    return argparse.Namespace(domain_id=domain_id, role="all")


def test_random_pick_moves_off_a_domain_with_another_run(other_run, monkeypatch, capsys):
    busy, _, _ = other_run
    free = busy + 1 if busy < 99 else busy - 1
    picks = iter([busy, free])

    class Picks:
        def randint(self, low, high):
            return next(picks)

    monkeypatch.setattr(runner.random, "SystemRandom", Picks)
    assert runner.choose_domain(args(None)) == free
    assert f"ROS_DOMAIN_ID {busy} is in use by another porl_ros run (/learner)" in capsys.readouterr().out


def test_explicit_domain_with_another_run_is_kept_with_a_warning(other_run, capsys):
    busy, _, _ = other_run
    assert runner.choose_domain(args(busy)) == busy
    assert f"warning: --domain-id {busy} already has porl_ros nodes (/learner)" in capsys.readouterr().out


def test_a_run_that_ended_frees_its_domain(other_run):
    domain, proc, group = other_run
    group.stop(proc)
    assert wait_until(lambda: "/learner" not in nodes_on_domain(domain, wait_s=0.2), timeout=20)


def test_split_roles_do_not_look():
    # The other host's nodes belong on the domain: no probe, the given domain is used.
    assert runner.choose_domain(argparse.Namespace(domain_id=42, role="robot")) == 42
