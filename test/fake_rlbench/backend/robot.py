"""A tiny deterministic kinematic arm + gripper standing in for PyRep's Arm / Gripper.

Tip position = HOME_TIP + J (q - q_home) with a fixed full-row-rank J (3 x DoF); joint
velocities integrate the joint positions (clamped to the Panda's joint limits) over
RLBench's 0.05 s step; the gripper opening moves toward its target at ``velocity`` per
step. Method names follow PyRep's where RLBench calls them.
"""

import numpy as np

from fake_rlbench.pyrep.errors import ConfigurationPathError, IKError

DT = 0.05
PANDA_HOME = np.array([0.0, 0.175, 0.0, -0.873, 0.0, 1.22, 0.785])
PANDA_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
PANDA_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
HOME_TIP = np.array([0.278, -0.008, 1.47])
DOWN_QUAT = np.array([0.0, 1.0, 0.0, 0.0])  # x, y, z, w


class FakeArm(object):
    def __init__(self, name: str, num_joints: int, max_velocity: float = 1.0,
                 max_acceleration: float = 4.0):
        self.name = name
        self.joint_names = ["%s_joint%d" % (name, i + 1) for i in range(num_joints)]
        self.joints = list(self.joint_names)
        n = num_joints
        self.max_velocity = max_velocity
        self.max_acceleration = max_acceleration
        self.home = np.resize(PANDA_HOME, n).astype(float)
        self.lower = np.resize(PANDA_LOWER, n).astype(float)
        self.upper = np.resize(PANDA_UPPER, n).astype(float)
        jac = np.zeros((3, n))
        jac[0, 1], jac[0, 3], jac[0, 5] = 0.5, -0.4, 0.3
        jac[1, 0], jac[1, 2], jac[1, 4] = 0.5, 0.3, 0.2
        jac[2, 1], jac[2, 3], jac[2, 5] = -0.4, -0.3, 0.2
        self.jacobian = jac
        self._jac_pinv = np.linalg.pinv(jac)
        self.reset()

    def reset(self):
        self.q = self.home.copy()
        self.measured_velocity = np.zeros_like(self.q)
        self.target_velocity = np.zeros_like(self.q)
        self.quaternion = DOWN_QUAT.copy()
        self.control_loop_enabled = True

    # PyRep-like API used by the action modes
    def set_control_loop_enabled(self, value: bool) -> None:
        self.control_loop_enabled = value

    def set_motor_locked_at_zero_velocity(self, value: bool) -> None:
        pass

    def set_joint_target_velocities(self, velocities) -> None:
        self.target_velocity = np.asarray(velocities, dtype=float).copy()

    def get_joint_target_velocities(self):
        return list(self.target_velocity)

    def get_joint_positions(self):
        return list(self.q)

    def get_joint_velocities(self):
        return list(self.measured_velocity)

    def get_joint_forces(self):
        return list(0.5 * self.measured_velocity + np.linspace(-2.0, 2.0, len(self.q)))

    def tip_position(self) -> np.ndarray:
        return HOME_TIP + self.jacobian @ (self.q - self.home)

    def get_tip_pose(self) -> np.ndarray:
        return np.concatenate([self.tip_position(), self.quaternion])

    def get_tip_matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, 3] = self.tip_position()
        return m

    def integrate(self) -> None:
        """One physics step with the current target velocities."""
        v = np.clip(self.target_velocity, -self.max_velocity, self.max_velocity)
        new_q = np.clip(self.q + v * DT, self.lower, self.upper)
        self.measured_velocity = (new_q - self.q) / DT
        self.q = new_q

    def velocity_toward(self, target_position, gain: float = 0.25) -> np.ndarray:
        """Joint velocities moving the tip ``gain`` of the way to ``target_position``."""
        err = np.asarray(target_position, dtype=float) - self.tip_position()
        v = self._jac_pinv @ (gain * err) / DT
        peak = np.max(np.abs(v))
        if peak > self.max_velocity:
            v = v * (self.max_velocity / peak)
        return v

    def get_path(self, position, quaternion=None, ignore_collisions=False, **kwargs):
        """Straight-line joint path to a tip pose (ConfigurationPathError if infeasible)."""
        position = np.asarray(position, dtype=float)
        if not np.all(np.isfinite(position)):
            raise IKError("IK failed: non-finite target")
        q_goal = self.q + self._jac_pinv @ (position - self.tip_position())
        if np.any(q_goal < self.lower) or np.any(q_goal > self.upper):
            raise ConfigurationPathError("Could not create path.")
        return _LinearPath(self, q_goal, quaternion)


class _LinearPath(object):
    def __init__(self, arm: FakeArm, q_goal: np.ndarray, quaternion):
        self._arm = arm
        self._goal = q_goal
        self._quat = None if quaternion is None else np.asarray(quaternion, dtype=float)
        steps = int(np.ceil(np.max(np.abs(q_goal - arm.q)) / (arm.max_velocity * DT)))
        self._steps = max(steps, 1)
        self._start = arm.q.copy()
        self._i = 0

    def step(self) -> bool:
        self._i += 1
        frac = min(self._i / self._steps, 1.0)
        new_q = self._start + frac * (self._goal - self._start)
        self._arm.measured_velocity = (new_q - self._arm.q) / DT
        self._arm.q = new_q
        if self._quat is not None and self._i >= self._steps:
            self._arm.quaternion = self._quat / np.linalg.norm(self._quat)
        return self._i >= self._steps


class FakeGripper(object):
    def __init__(self, name: str = "PandaGripper"):
        self.name = name
        self.reset()

    def reset(self):
        self.open_amount = 1.0

    def get_open_amount(self):
        return [self.open_amount, self.open_amount]

    def get_joint_positions(self):
        return [0.04 * self.open_amount, 0.04 * self.open_amount]

    def get_touch_sensor_forces(self):
        # PyRep's Gripper: only grippers with touch sensors in their model (the Panda's) can
        # answer; RLBench asks while building an observation, so the first reset raises this.
        if self.name != "PandaGripper":
            raise NotImplementedError("No touch sensors for this robot!")
        return [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]

    def actuate(self, amount: float, velocity: float) -> bool:
        step = velocity * 2.5  # 0.2 -> half the range per simulation step
        self.open_amount += float(np.clip(amount - self.open_amount, -step, step))
        return abs(amount - self.open_amount) < 1e-9

    def grasp(self, obj) -> bool:
        return False

    def release(self) -> None:
        pass

    def get_grasped_objects(self):
        return []


class Robot(object):
    """Mirror of rlbench/backend/robot.py: an arm and a gripper."""

    def __init__(self, arm: FakeArm, gripper: FakeGripper):
        self.arm = arm
        self.gripper = gripper
