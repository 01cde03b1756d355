#!/usr/bin/env bash
# Builds porl_ros the way a ROS 2 user does, with colcon in a fresh workspace, using the
# pip-installed ROS 2 in .venv as the underlay; then imports the built packages.
#   scripts/porl-env scripts/colcon_check.sh [WORKSPACE_DIR]
# colcon stops crawling at the first package.xml it finds, so the interface package
# nested in this repository is named as a second base path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ws="${1:-$(mktemp -d)}"
venv="${VIRTUAL_ENV:-$root/.venv}"
mkdir -p "$ws/src/porl_ros"
# A copy of the sources (what git tracks, plus new files not ignored).
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$ws/src/porl_ros")
cd "$ws"
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
colcon build --base-paths src src/porl_ros/porl_ros_interfaces \
  --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF
# shellcheck disable=SC1091
set +u; . install/local_setup.sh; set -u
python - <<'PY'
import porl_ros, porl_ros_interfaces.msg as m
from porl_ros_interfaces.srv import GetAction
print("colcon build ok:", porl_ros.__file__, m.__file__)
PY
test -x install/porl_ros/lib/porl_ros/learner
test -f install/porl_ros/share/porl_ros/launch/finetune.launch.py
echo "colcon workspace: $ws"
