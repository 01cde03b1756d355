"""Stand-in for the parts of PyRep (stepjam/PyRep 4.1.0.3) that RLBench's API exposes."""

__version__ = "4.1.0.3"

from fake_rlbench.pyrep.pyrep import PyRep  # noqa: E402,F401
