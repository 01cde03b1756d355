"""Command-line tools that need no ROS: `pretrain` (demonstrations + behaviour cloning),
`evaluate` (success rate and return of a saved policy), `experiment` (the grid of PORL
variants), `parameter_docs` (writes docs/parameters.md) and `fastdds_profile`."""
