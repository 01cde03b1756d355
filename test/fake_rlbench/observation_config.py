"""Mirror of rlbench/observation_config.py (same constructor arguments and setters)."""

from fake_rlbench.noise_model import Identity, NoiseModel
from fake_rlbench.pyrep.const import RenderMode


class CameraConfig(object):
    def __init__(self, rgb=True, rgb_noise: NoiseModel = Identity(), depth=True,
                 depth_noise: NoiseModel = Identity(), point_cloud=True, mask=True,
                 image_size=(128, 128), render_mode=RenderMode.OPENGL3,
                 masks_as_one_channel=True, depth_in_meters=False):
        self.rgb = rgb
        self.rgb_noise = rgb_noise
        self.depth = depth
        self.depth_noise = depth_noise
        self.point_cloud = point_cloud
        self.mask = mask
        self.image_size = image_size
        self.render_mode = render_mode
        self.masks_as_one_channel = masks_as_one_channel
        self.depth_in_meters = depth_in_meters

    def set_all(self, value: bool):
        self.rgb = value
        self.depth = value
        self.point_cloud = value
        self.mask = value


class ObservationConfig(object):
    def __init__(self,
                 left_shoulder_camera: CameraConfig = None,
                 right_shoulder_camera: CameraConfig = None,
                 overhead_camera: CameraConfig = None,
                 wrist_camera: CameraConfig = None,
                 front_camera: CameraConfig = None,
                 joint_velocities=True,
                 joint_velocities_noise: NoiseModel = Identity(),
                 joint_positions=True,
                 joint_positions_noise: NoiseModel = Identity(),
                 joint_forces=True,
                 joint_forces_noise: NoiseModel = Identity(),
                 gripper_open=True,
                 gripper_pose=True,
                 gripper_matrix=False,
                 gripper_joint_positions=False,
                 gripper_touch_forces=False,
                 wrist_camera_matrix=False,
                 record_gripper_closing=False,
                 task_low_dim_state=False):
        self.left_shoulder_camera = left_shoulder_camera or CameraConfig()
        self.right_shoulder_camera = right_shoulder_camera or CameraConfig()
        self.overhead_camera = overhead_camera or CameraConfig()
        self.wrist_camera = wrist_camera or CameraConfig()
        self.front_camera = front_camera or CameraConfig()
        self.joint_velocities = joint_velocities
        self.joint_velocities_noise = joint_velocities_noise
        self.joint_positions = joint_positions
        self.joint_positions_noise = joint_positions_noise
        self.joint_forces = joint_forces
        self.joint_forces_noise = joint_forces_noise
        self.gripper_open = gripper_open
        self.gripper_pose = gripper_pose
        self.gripper_matrix = gripper_matrix
        self.gripper_joint_positions = gripper_joint_positions
        self.gripper_touch_forces = gripper_touch_forces
        self.wrist_camera_matrix = wrist_camera_matrix
        self.record_gripper_closing = record_gripper_closing
        self.task_low_dim_state = task_low_dim_state

    def _cameras(self):
        return {"left_shoulder": self.left_shoulder_camera,
                "right_shoulder": self.right_shoulder_camera,
                "overhead": self.overhead_camera, "wrist": self.wrist_camera,
                "front": self.front_camera}

    def set_all(self, value: bool):
        self.set_all_high_dim(value)
        self.set_all_low_dim(value)

    def set_all_high_dim(self, value: bool):
        for cam in self._cameras().values():
            cam.set_all(value)

    def set_all_low_dim(self, value: bool):
        for name in ("joint_velocities", "joint_positions", "joint_forces", "gripper_open",
                     "gripper_pose", "gripper_matrix", "gripper_joint_positions",
                     "gripper_touch_forces", "wrist_camera_matrix", "task_low_dim_state"):
            setattr(self, name, value)
