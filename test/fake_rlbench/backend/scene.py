"""Reduced mirror of rlbench/backend/scene.py: placement, stepping, observations, demos."""

from typing import Callable

import numpy as np

from fake_rlbench.backend.exceptions import DemoError
from fake_rlbench.backend.observation import Observation
from fake_rlbench.demo import Demo
from fake_rlbench.observation_config import ObservationConfig

_MAX_DEMO_STEPS = 400
# Workspace box used by check_target_in_workspace (RLBench derives it from the table:
# 0.2 m beyond its edges, from the table top to 1 m above it).
WORKSPACE_MIN = np.array([-0.6, -0.8, 0.752])
WORKSPACE_MAX = np.array([0.9, 0.8, 1.752])


class Scene(object):
    def __init__(self, pyrep, robot, obs_config: ObservationConfig = ObservationConfig(),
                 robot_setup: str = "panda"):
        self.pyrep = pyrep
        self.robot = robot
        self.robot_setup = robot_setup
        self.task = None
        self._obs_config = obs_config
        self._variation_index = 0
        self._step_callback = None

    def load(self, task) -> None:
        task.init_task()
        self.task = task

    def unload(self) -> None:
        self.task = None

    def init_episode(self, index: int, randomly_place: bool = True,
                     max_attempts: int = 5, place_demo: bool = False):
        self._variation_index = index
        return self.task.init_episode(index)

    def reset(self) -> None:
        self.robot.arm.reset()
        self.robot.gripper.reset()
        if self.task is not None:
            self.task.cleanup()

    def step(self) -> None:
        self.pyrep.step()
        self.robot.arm.integrate()
        self.task.step()
        if self._step_callback is not None:
            self._step_callback()

    def register_step_callback(self, func) -> None:
        self._step_callback = func

    def check_target_in_workspace(self, target_pos: np.ndarray) -> bool:
        p = np.asarray(target_pos, dtype=float)
        return bool(np.all(p > WORKSPACE_MIN) and np.all(p < WORKSPACE_MAX))

    def get_observation_config(self) -> ObservationConfig:
        return self._obs_config

    def get_observation(self) -> Observation:
        cfg = self._obs_config
        arm, gripper = self.robot.arm, self.robot.gripper
        images = {}
        for cam_name, cam in cfg._cameras().items():
            h, w = cam.image_size
            images[cam_name + "_rgb"] = np.zeros((h, w, 3), np.uint8) if cam.rgb else None
            images[cam_name + "_depth"] = np.zeros((h, w), np.float32) if cam.depth else None
            images[cam_name + "_mask"] = np.zeros((h, w), np.uint8) if cam.mask else None
            images[cam_name + "_point_cloud"] = (
                np.zeros((h, w, 3), np.float32) if cam.point_cloud else None)
        forces = None
        if cfg.joint_forces:
            fs, vels = arm.get_joint_forces(), arm.get_joint_target_velocities()
            forces = cfg.joint_forces_noise.apply(
                np.array([-f if v < 0 else f for f, v in zip(fs, vels)]))
        touch = None
        if cfg.gripper_touch_forces:
            touch = np.array([x for f in gripper.get_touch_sensor_forces() for x in f])
        obs = Observation(
            **images,
            joint_velocities=(cfg.joint_velocities_noise.apply(
                np.array(arm.get_joint_velocities())) if cfg.joint_velocities else None),
            joint_positions=(cfg.joint_positions_noise.apply(
                np.array(arm.get_joint_positions())) if cfg.joint_positions else None),
            joint_forces=forces,
            gripper_open=((1.0 if gripper.get_open_amount()[0] > 0.9 else 0.0)
                          if cfg.gripper_open else None),
            gripper_pose=np.array(arm.get_tip_pose()) if cfg.gripper_pose else None,
            gripper_matrix=arm.get_tip_matrix() if cfg.gripper_matrix else None,
            gripper_touch_forces=touch,
            gripper_joint_positions=(np.array(gripper.get_joint_positions())
                                     if cfg.gripper_joint_positions else None),
            task_low_dim_state=(self.task.get_low_dim_state()
                                if cfg.task_low_dim_state else None),
            misc={"variation_index": self._variation_index})
        return self.task.decorate_observation(obs)

    def get_demo(self, record: bool = True,
                 callable_each_step: Callable[[Observation], None] = None,
                 randomly_place: bool = True) -> Demo:
        """Scripted demo: follow the task's waypoints with joint-velocity control."""
        demo = []

        def record_step():
            if record:
                demo.append(self.get_observation())
            if callable_each_step is not None:
                callable_each_step(self.get_observation())

        record_step()
        arm, gripper = self.robot.arm, self.robot.gripper
        steps = 0
        for kind, value in self.task.demo_waypoints():
            if kind == "gripper":
                done = False
                while not done:
                    done = gripper.actuate(float(value), velocity=0.2)
                    self.pyrep.step()
                    self.task.step()
                    record_step()
                continue
            target = np.asarray(value, dtype=float)
            while np.linalg.norm(arm.tip_position() - target) > 0.01:
                arm.set_joint_target_velocities(arm.velocity_toward(target))
                self.step()
                record_step()
                steps += 1
                if steps > _MAX_DEMO_STEPS:
                    raise DemoError("Demo did not converge.", self.task)
        arm.set_joint_target_velocities(np.zeros(len(arm.q)))
        success, _ = self.task.success()
        if not success:
            raise DemoError("Demo was completed, but was not successful.", self.task)
        return Demo(demo)
