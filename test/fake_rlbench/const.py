"""Mirror of rlbench/const.py: robot setups -> (arm name, gripper name, arm DoF).

The real file maps to PyRep classes (Panda, PandaGripper, 7), ...; the DoF is what the
action modes read.
"""

SUPPORTED_ROBOTS = {
    "panda": ("Panda", "PandaGripper", 7),
    "jaco": ("Jaco", "JacoGripper", 6),
    "mico": ("Mico", "MicoGripper", 6),
    "sawyer": ("Sawyer", "BaxterGripper", 7),
    "ur5": ("UR5", "Robotiq85Gripper", 6),
}

colors = [
    ("red", (1.0, 0.0, 0.0)), ("maroon", (0.5, 0.0, 0.0)), ("lime", (0.0, 1.0, 0.0)),
    ("green", (0.0, 0.5, 0.0)), ("blue", (0.0, 0.0, 1.0)), ("navy", (0.0, 0.0, 0.5)),
    ("yellow", (1.0, 1.0, 0.0)), ("cyan", (0.0, 1.0, 1.0)), ("magenta", (1.0, 0.0, 1.0)),
    ("silver", (0.75, 0.75, 0.75)), ("gray", (0.5, 0.5, 0.5)), ("orange", (1.0, 0.5, 0.0)),
    ("olive", (0.5, 0.5, 0.0)), ("purple", (0.5, 0.0, 0.5)), ("teal", (0, 0.5, 0.5)),
    ("azure", (0.0, 0.5, 1.0)), ("violet", (0.5, 0.0, 1.0)), ("rose", (1.0, 0.0, 0.5)),
    ("black", (0.0, 0.0, 0.0)), ("white", (1.0, 1.0, 1.0)),
]
