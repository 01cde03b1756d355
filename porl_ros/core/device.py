"""Turn a device string from a parameter file into a torch.device, refusing nonsense early."""

from __future__ import annotations

import re

import torch

_CUDA_RE = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu', 'cuda', 'cuda:N' taken literally.

    Raises ValueError naming the value for an unknown string, for CUDA requested on a
    machine without CUDA, and for a CUDA index that does not exist.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ValueError(f"device must be a string, got {spec!r}")
    s = spec.strip().lower()
    if s == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if s == "cpu":
        return torch.device("cpu")
    m = _CUDA_RE.match(s)
    if m is None:
        raise ValueError(f"unknown device {spec!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available on this machine")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r} requested but only {torch.cuda.device_count()} "
                         f"CUDA device(s) exist")
    return torch.device(s)
