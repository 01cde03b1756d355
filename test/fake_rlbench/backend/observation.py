"""Mirror of rlbench/backend/observation.py.

The same 30 constructor arguments (None for every field disabled in the
ObservationConfig) and ``get_low_dim_data``'s concatenation order: gripper_open,
joint_velocities, joint_positions, joint_forces, gripper_pose, gripper_joint_positions,
gripper_touch_forces, task_low_dim_state (gripper_matrix is not part of it).
"""

import numpy as np

_CAMERAS = ("left_shoulder", "right_shoulder", "overhead", "wrist", "front")
_IMAGES = ("rgb", "depth", "mask", "point_cloud")
_LOW_DIM_AFTER_GRIPPER_OPEN = (
    "joint_velocities", "joint_positions", "joint_forces", "gripper_pose",
    "gripper_joint_positions", "gripper_touch_forces", "task_low_dim_state")


class Observation(object):
    """Storage for both visual and low-dimensional observations."""

    def __init__(self,
                 left_shoulder_rgb, left_shoulder_depth, left_shoulder_mask,
                 left_shoulder_point_cloud,
                 right_shoulder_rgb, right_shoulder_depth, right_shoulder_mask,
                 right_shoulder_point_cloud,
                 overhead_rgb, overhead_depth, overhead_mask, overhead_point_cloud,
                 wrist_rgb, wrist_depth, wrist_mask, wrist_point_cloud,
                 front_rgb, front_depth, front_mask, front_point_cloud,
                 joint_velocities: np.ndarray,
                 joint_positions: np.ndarray,
                 joint_forces: np.ndarray,
                 gripper_open: float,
                 gripper_pose: np.ndarray,
                 gripper_matrix: np.ndarray,
                 gripper_joint_positions: np.ndarray,
                 gripper_touch_forces: np.ndarray,
                 task_low_dim_state: np.ndarray,
                 misc: dict):
        images = locals()
        for cam in _CAMERAS:
            for kind in _IMAGES:
                name = "%s_%s" % (cam, kind)
                setattr(self, name, images[name])
        self.joint_velocities = joint_velocities
        self.joint_positions = joint_positions
        self.joint_forces = joint_forces
        self.gripper_open = gripper_open
        self.gripper_pose = gripper_pose
        self.gripper_matrix = gripper_matrix
        self.gripper_joint_positions = gripper_joint_positions
        self.gripper_touch_forces = gripper_touch_forces
        self.task_low_dim_state = task_low_dim_state
        self.misc = misc

    def get_low_dim_data(self) -> np.ndarray:
        """1-D array of all the low-dimensional observations that are present."""
        parts = [] if self.gripper_open is None else [[self.gripper_open]]
        for name in _LOW_DIM_AFTER_GRIPPER_OPEN:
            value = getattr(self, name)
            if value is not None:
                parts.append(value)
        return np.concatenate(parts) if parts else np.array([])
