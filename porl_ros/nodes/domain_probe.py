"""Is a ROS domain already in use? A best-effort look before a run takes one.

Two runs on one domain used to mix their data and stop each other; run identity (a run id in
every Transition, TransitionAck and TrainingStatus) now makes each refuse the other's messages,
and this probe lets `porl-ros run` avoid the collision in the first place: it joins the domain
with a throw-away context for a moment and lists the nodes it discovers.
"""
from __future__ import annotations

import time

PROBE_NODE = "porl_domain_probe"


def nodes_on_domain(domain_id: int, wait_s: float = 1.5) -> list[str]:
    """Fully qualified names of the ROS nodes discovered on `domain_id` within `wait_s` (the
    probe itself excluded). Discovery follows ROS_AUTOMATIC_DISCOVERY_RANGE as the run will."""
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    # No signal handlers: rclpy's would stay installed after this context is gone (only the
    # default context's shutdown removes them) and take the runner's Ctrl-C from then on.
    rclpy.init(args=[], context=context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = rclpy.create_node(PROBE_NODE, context=context, enable_rosout=False,
                                 start_parameter_services=False)
        try:
            deadline = time.monotonic() + wait_s
            while True:
                found = sorted(f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces()
                               if name != PROBE_NODE)
                if found or time.monotonic() >= deadline:
                    return found
                time.sleep(0.1)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
