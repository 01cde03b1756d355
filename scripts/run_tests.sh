#!/usr/bin/env bash
# The test command (CI runs exactly this through `make test`). Every test run gets its
# own ROS_DOMAIN_ID and localhost-only discovery, so parallel runs never see each other.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 10 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
echo "porl_ros tests: ROS_DOMAIN_ID=$ROS_DOMAIN_ID, discovery LOCALHOST"
exec python -m pytest test "$@"
