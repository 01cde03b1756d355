"""The QoS profiles of porl_ros's topics (see DESIGN.md: Conventions)."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# Transitions, observations and actions: reliable with a deep queue, so nothing is
# lost silently while a subscriber is briefly busy.
STREAM_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Policy weights: reliable + transient-local, depth 1: a late joiner (a restarted
# policy server) gets the latest weights at once. Reliable also matters for size:
# best-effort messages over ~0.5 MB can be dropped by Fast DDS's shared-memory path.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# Status and diagnostics: best effort; the next one is never far behind.
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
