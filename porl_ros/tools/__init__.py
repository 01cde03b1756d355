"""Command-line tools that need no ROS: `pretrain` (demonstrations + behaviour cloning)
and `evaluate` (success rate and return of a saved policy)."""
