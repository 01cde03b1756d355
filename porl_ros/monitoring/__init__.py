"""Monitoring outside rviz: TensorBoard scalars for the learner and the end-of-run report.

Free of rclpy, like porl_ros.core, so the report can be rendered anywhere from a run
directory.
"""
