"""rviz markers for what the bridge's environment is doing.

`build_markers` turns the back-end's named 3-D points (EnvBackend.markers(): end
effector, goal, ...) and the last executed action into one MarkerArray: a sphere per
point, an arrow from the end effector along the action's first three components
(orange when epsilon-greedy replaced the policy's action, blue when the policy chose
it), a text line (episode, step, phase) and, when an episode has just succeeded, a
large green sphere that rviz removes by itself after `SUCCESS_FLASH_S`.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Optional

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

# Reliable: rviz's Marker displays subscribe reliably by default and would not match a
# best-effort publisher. Shallow: only the newest picture matters.
VIZ_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)

EXPLORATORY_COLOR = (1.0, 0.55, 0.0, 1.0)  # orange: epsilon-greedy's random action
POLICY_COLOR = (0.1, 0.4, 1.0, 1.0)  # blue: the policy's own action
SUCCESS_COLOR = (0.1, 0.9, 0.2, 0.45)
POINT_COLORS = {"end_effector": (0.2, 0.6, 1.0, 1.0), "goal": (0.1, 0.8, 0.2, 0.8),
                "achieved_goal": (0.9, 0.8, 0.1, 1.0)}
POINT_DIAMETER_M = 0.03
SUCCESS_DIAMETER_M = 0.15
SUCCESS_FLASH_S = 1.0
# Marker ids inside each namespace: one marker per namespace, so each update replaces it.
MARKER_ID = 0


def _color(rgba) -> ColorRGBA:
    r, g, b, a = rgba
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))


def _point(xyz) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _point_color(name: str):
    if name in POINT_COLORS:
        return POINT_COLORS[name]
    hue = zlib.crc32(name.encode()) % 1000 / 1000.0  # stable color for other named points
    return (0.5 + 0.5 * np.cos(2 * np.pi * hue), 0.5 + 0.5 * np.cos(2 * np.pi * (hue + 1 / 3)),
            0.5 + 0.5 * np.cos(2 * np.pi * (hue + 2 / 3)), 1.0)


def _marker(ns: str, kind: int, frame_id: str, stamp) -> Marker:
    marker = Marker(ns=ns, id=MARKER_ID, type=kind, action=Marker.ADD)
    marker.header.frame_id = frame_id
    marker.header.stamp = stamp
    marker.pose.orientation.w = 1.0
    return marker


def build_markers(frame_id: str, stamp, points: Mapping[str, np.ndarray], *, prefix: str = "",
                  action: Optional[np.ndarray] = None, exploratory: bool = False, arrow_scale: float = 0.1,
                  success_flash: bool = False, text: str = "") -> MarkerArray:
    """The MarkerArray for one moment of the environment.

    points: named 3-D positions in `frame_id`; prefix: namespace prefix (e.g. 'bridge_1/')
    so several bridges can share one topic; arrow_scale: metres per unit of action.
    """
    markers = []
    finite = {name: np.asarray(xyz, dtype=np.float64).reshape(-1)[:3] for name, xyz in points.items()}
    finite = {name: xyz for name, xyz in finite.items() if xyz.shape == (3,) and np.all(np.isfinite(xyz))}
    for name, xyz in finite.items():
        sphere = _marker(prefix + name, Marker.SPHERE, frame_id, stamp)
        sphere.pose.position = _point(xyz)
        sphere.scale.x = sphere.scale.y = sphere.scale.z = POINT_DIAMETER_M
        sphere.color = _color(_point_color(name))
        markers.append(sphere)

    anchor = next((finite[name] for name in ("end_effector", "achieved_goal") if name in finite), None)
    if anchor is None and finite:
        anchor = next(iter(finite.values()))
    if action is not None and anchor is not None:
        act = np.asarray(action, dtype=np.float64).reshape(-1)
        if act.shape[0] >= 3 and np.all(np.isfinite(act[:3])):
            arrow = _marker(prefix + "action", Marker.ARROW, frame_id, stamp)
            arrow.points = [_point(anchor), _point(anchor + arrow_scale * act[:3])]
            arrow.scale.x, arrow.scale.y, arrow.scale.z = 0.008, 0.016, 0.02  # shaft, head width, head length
            arrow.color = _color(EXPLORATORY_COLOR if exploratory else POLICY_COLOR)
            markers.append(arrow)

    if success_flash and finite:
        where = finite.get("goal", anchor)
        flash = _marker(prefix + "success", Marker.SPHERE, frame_id, stamp)
        flash.pose.position = _point(where)
        flash.scale.x = flash.scale.y = flash.scale.z = SUCCESS_DIAMETER_M
        flash.color = _color(SUCCESS_COLOR)
        flash.lifetime = Duration(sec=int(SUCCESS_FLASH_S), nanosec=int(SUCCESS_FLASH_S % 1 * 1e9))
        markers.append(flash)

    if text and anchor is not None:
        label = _marker(prefix + "info", Marker.TEXT_VIEW_FACING, frame_id, stamp)
        label.pose.position = _point(anchor + np.array([0.0, 0.0, 0.12]))
        label.scale.z = 0.03  # text height
        label.color = _color((1.0, 1.0, 1.0, 1.0))
        label.text = text
        markers.append(label)
    return MarkerArray(markers=markers)
