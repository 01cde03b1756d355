"""Fast conversions between NumPy arrays and the array fields of ROS messages.

rclpy stores `float32[]` as array.array('f') and `uint8[]` as array.array('B');
filling them from a buffer is orders of magnitude faster than element by element.
"""

from __future__ import annotations

import array

import numpy as np


def to_float32_field(values: np.ndarray) -> array.array:
    """A float32[] field value from any numeric array-like."""
    field = array.array("f")
    field.frombytes(np.ascontiguousarray(values, dtype=np.float32).reshape(-1).tobytes())
    return field


def from_float32_field(field, expected_size: int | None = None, name: str = "field") -> np.ndarray:
    """A float32 NumPy copy of a float32[] field; checks size and finiteness."""
    values = np.array(field, dtype=np.float32).reshape(-1)
    if expected_size is not None and values.shape[0] != expected_size:
        raise ValueError(f"{name} has {values.shape[0]} values, expected {expected_size}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or inf")
    return values


def to_uint8_field(data: bytes) -> array.array:
    """A uint8[] field value from bytes."""
    field = array.array("B")
    field.frombytes(data)
    return field


def from_uint8_field(field) -> bytes:
    """The bytes held by a uint8[] field."""
    if isinstance(field, array.array):
        return field.tobytes()
    return bytes(field)
