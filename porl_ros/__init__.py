"""porl_ros: online RL fine-tuning of a pre-trained robot policy with PORL, on ROS 2."""

__version__ = "0.1.0"
