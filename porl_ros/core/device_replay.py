"""DeviceReplay: the replay buffer's storage mirrored on the learner's device, sampled there.

The ReplayBuffer (numpy, host) stays the buffer of record: it validates, saves and loads.
This mirror holds the same [capacity, width] float32 rows as one device tensor and follows
the buffer through its watcher hook: each add() or set_mc_returns() marks slots, and sync()
copies the marked rows over in one host-to-device transfer (once per env step, before the
updates). Batch indices are drawn on the device from a seeded torch.Generator and rows are
gathered there, so sampling needs no host round trip and can be captured in a CUDA graph:
the live size is a device tensor, read by the sampler, not a Python int.
"""

from __future__ import annotations

import numpy as np
import torch

from .replay import Batch, ReplayBuffer

INDEX_RANGE = 2**62  # indices = uniform int64 below this, modulo the size (bias < size / 2**62)


def sample_indices(generator: torch.Generator, size: torch.Tensor, updates: int, batch_size: int) -> torch.Tensor:
    """[updates, batch_size] uniform indices below `size` (a 0-d int64 tensor on the generator's device)."""
    raw = torch.randint(INDEX_RANGE, (updates, batch_size), generator=generator, device=size.device,
                        dtype=torch.int64)
    return raw.remainder(size)


class DeviceReplay:
    """A device copy of one ReplayBuffer's rows, kept in step through its watcher hook."""

    def __init__(self, replay: ReplayBuffer, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.capacity, self.width = replay.capacity, replay.width
        self.storage = torch.zeros(self.capacity, self.width, dtype=torch.float32, device=self.device)
        self.size = torch.zeros((), dtype=torch.int64, device=self.device)
        self.replay: ReplayBuffer | None = None
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self._copy_all = True
        self.bind(replay)

    def fits(self, replay: ReplayBuffer) -> bool:
        """Whether `replay` has this mirror's shape (then bind() reuses the same storage)."""
        return (replay.capacity, replay.width) == (self.capacity, self.width)

    def bind(self, replay: ReplayBuffer) -> None:
        """Follow `replay` from now on (a resumed learner loads a new buffer): all rows are copied
        at the next sync(). The storage tensor stays the same, so captured graphs stay valid."""
        if not self.fits(replay):
            raise ValueError(f"replay of capacity {replay.capacity} and row width {replay.width} does not fit a "
                             f"device mirror of {self.capacity} x {self.width}")
        self.unbind()
        replay.add_watcher(self._mark)
        self.replay = replay
        self._copy_all = True

    def unbind(self) -> None:
        if self.replay is not None:
            self.replay.remove_watcher(self._mark)
            self.replay = None
        self._pending, self._pending_count = [], 0

    def _mark(self, slots: np.ndarray) -> None:
        if self._copy_all:
            return
        self._pending.append(slots)
        self._pending_count += len(slots)
        if self._pending_count >= self.capacity:  # cheaper to copy everything
            self._pending, self._pending_count, self._copy_all = [], 0, True

    def sync(self) -> None:
        """Copy the rows written since the last sync to the device and publish the live size."""
        replay = self.replay
        if replay is None:
            raise RuntimeError("DeviceReplay.sync() on a mirror bound to no replay buffer")
        if self._copy_all:
            self.storage.copy_(torch.from_numpy(replay.rows(np.arange(self.capacity))))
        elif self._pending:
            slots = np.unique(np.concatenate(self._pending))
            rows = torch.from_numpy(replay.rows(slots)).to(self.device)
            self.storage.index_copy_(0, torch.from_numpy(slots).to(self.device), rows)
        self._pending, self._pending_count, self._copy_all = [], 0, False
        self.size.fill_(len(replay))

    def sample(self, generator: torch.Generator, updates: int, batch_size: int) -> torch.Tensor:
        """[updates, batch_size] row indices for `updates` batches, drawn on the device."""
        return sample_indices(generator, self.size, updates, batch_size)

    def gather(self, indices: torch.Tensor) -> Batch:
        """The batch of the rows at `indices` ([B] int64 on the device)."""
        assert self.replay is not None
        return self.replay.batch_from_rows(self.storage.index_select(0, indices))
