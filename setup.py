"""porl_ros as an ament_python package (colcon) and a pip-installable package (venv)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "porl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="porl_ros maintainers",
    maintainer_email="maintainers@porl-ros.dev",
    description="Online RL fine-tuning of a pre-trained robot policy with PORL on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "porl-ros = porl_ros.cli:main",
            "sim_bridge = porl_ros.nodes.sim_bridge:main",
            "arm_bridge = porl_ros.nodes.arm_bridge:main",
            "sim_hardware = porl_ros.nodes.sim_hardware:main",
            "exploration_controller = porl_ros.nodes.exploration_controller:main",
            "policy_server = porl_ros.nodes.policy_server:main",
            "learner = porl_ros.nodes.learner:main",
            "recorder = porl_ros.nodes.recorder:main",
        ],
    },
)
