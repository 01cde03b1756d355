"""Replay buffer: preallocated numpy ring, uniform sampling, one host-to-device copy per batch.

All float columns of a transition live side by side in one [capacity, width] float32
array, so a batch is one fancy-index gather, one torch.from_numpy(...).to(device) and
column views: a single transfer per batch whatever the device.

Besides what the bridge sent, each row has an `mc_return` column: the discounted return
the episode actually collected from that step on, filled in by the learner when the
episode ends (-inf until then: "not known yet"). The critic's optional Monte-Carlo lower
bound reads it.

A watcher (add_watcher) is told which slots were written, by add() and set_mc_returns(): the
learner's device-side copy of the storage (device_replay.py) follows the buffer that way.
"""

from __future__ import annotations

import json
import os
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ._atomic import atomic_write_bytes, read_safetensors_metadata

FORMAT = "porl_ros.replay"
FORMAT_VERSION = 2  # 2: the mc_return column and the insert counter


class ReplayFileError(ValueError):
    """A replay file that is missing, truncated, corrupt or inconsistent (names the path)."""


class Batch(NamedTuple):
    obs: torch.Tensor  # [B, obs_dim]
    action: torch.Tensor  # [B, act_dim]
    reward: torch.Tensor  # [B]
    next_obs: torch.Tensor  # [B, obs_dim]
    terminated: torch.Tensor  # [B], 1.0 where the episode truly ended (no bootstrap)
    # [B] observed discounted return to go, -inf where the episode has not ended yet
    mc_return: Optional[torch.Tensor] = None
    # [B] the bootstrap's discount, gamma ** steps (n-step batches); None: one step, gamma
    discount: Optional[torch.Tensor] = None


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions; once full the oldest is overwritten."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        for name, v in (("capacity", capacity), ("obs_dim", obs_dim), ("act_dim", act_dim)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.capacity, self.obs_dim, self.act_dim = int(capacity), int(obs_dim), int(act_dim)
        o, a = self.obs_dim, self.act_dim
        # Column layout: obs | action | reward | next_obs | terminated | mc_return
        self._cols = {"obs": slice(0, o), "action": slice(o, o + a), "reward": slice(o + a, o + a + 1),
                      "next_obs": slice(o + a + 1, 2 * o + a + 1),
                      "terminated": slice(2 * o + a + 1, 2 * o + a + 2),
                      "mc_return": slice(2 * o + a + 2, 2 * o + a + 3)}
        self.width = 2 * o + a + 3
        self._data = np.zeros((self.capacity, self.width), dtype=np.float32)
        self._source = np.zeros(self.capacity, dtype=np.int32)
        self.size = 0
        self.cursor = 0  # next slot to write
        self.added = 0  # transitions ever added: the insert number of the next one
        # Insert number of the row that continues each row's episode (-1: none), for n-step
        # targets; rebuilt from the rows on load, so the file format does not carry it.
        self._next = np.full(self.capacity, -1, dtype=np.int64)
        self._latest_of_source: dict[int, int] = {}
        self._watchers: list[Callable[[np.ndarray], None]] = []

    def add_watcher(self, callback: Callable[[np.ndarray], None]) -> None:
        """Call `callback(slots)` (int64 row indices) after rows are written."""
        self._watchers.append(callback)

    def remove_watcher(self, callback: Callable[[np.ndarray], None]) -> None:
        self._watchers.remove(callback)

    def _written(self, slots: np.ndarray) -> None:
        for callback in self._watchers:
            callback(slots)

    def __len__(self) -> int:
        return self.size

    # ---------------------------------------------------------------- writing
    def _check(self, name: str, value, shape: tuple[int, ...]) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: not numeric ({value!r:.80})") from None
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: contains non-finite values (NaN or inf)")
        return arr

    def add(self, obs, action, reward, next_obs, terminated, source: int = 0) -> int:
        """Append one transition and return its insert number (see set_mc_returns);
        everything is validated before anything is written."""
        o = self._check("obs", obs, (self.obs_dim,))
        a = self._check("action", action, (self.act_dim,))
        r = self._check("reward", reward, ())
        no = self._check("next_obs", next_obs, (self.obs_dim,))
        if isinstance(terminated, (np.ndarray, np.generic)) and terminated.shape == ():
            terminated = terminated.item()
        if not isinstance(terminated, (bool, int)) or terminated not in (0, 1):
            raise ValueError(f"terminated: expected a bool, got {terminated!r}")
        if isinstance(source, np.integer):
            source = int(source)
        if not isinstance(source, int) or isinstance(source, bool) or not 0 <= source < 2**31:
            raise ValueError(f"source: expected an int in [0, 2**31), got {source!r}")
        self._next[self.cursor] = -1  # the overwritten row's link goes with it
        row = self._data[self.cursor]
        row[self._cols["obs"]] = o
        row[self._cols["action"]] = a
        row[self._cols["reward"]] = r
        row[self._cols["next_obs"]] = no
        row[self._cols["terminated"]] = float(terminated)
        row[self._cols["mc_return"]] = -np.inf
        self._source[self.cursor] = source
        if self._watchers:
            self._written(np.array([self.cursor], dtype=np.int64))
        self.cursor = (self.cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1
        self._link(source, self.added - 1)
        return self.added - 1

    def _link(self, source: int, number: int) -> None:
        """Record row `number` as the continuation of its source's previous row when that row is
        still stored, did not terminate, and ended where this one starts (the same episode)."""
        previous = self._latest_of_source.get(source)
        self._latest_of_source[source] = number
        if previous is None or previous < self.added - self.size:
            return
        p, n, c = previous % self.capacity, number % self.capacity, self._cols
        if self._data[p, c["terminated"].start] == 0.0 and np.array_equal(self._data[n, c["obs"]],
                                                                          self._data[p, c["next_obs"]]):
            self._next[p] = number

    def set_mc_returns(self, insert_numbers, returns) -> int:
        """Record the observed return to go of earlier transitions, named by the insert numbers
        add() gave them; those already overwritten by the ring are skipped. Returns how many
        were written."""
        numbers = np.asarray(insert_numbers, dtype=np.int64).reshape(-1)
        values = np.asarray(returns, dtype=np.float32).reshape(-1)
        if numbers.shape != values.shape:
            raise ValueError(f"insert_numbers and returns differ in length ({numbers.size} vs {values.size})")
        if not np.all(np.isfinite(values)):
            raise ValueError("returns contain NaN or inf")
        live = (numbers < self.added) & (numbers >= self.added - self.size)
        slots = numbers[live] % self.capacity
        self._data[slots, self._cols["mc_return"].start] = values[live]
        if self._watchers and slots.size:
            self._written(slots)
        return int(live.sum())

    # ---------------------------------------------------------------- reading
    def sample(self, batch_size: int, device: str | torch.device = "cpu",
               generator: Optional[np.random.Generator] = None, n_step: int = 1, gamma: float = 0.99) -> Batch:
        """Uniform sample with replacement (so any batch size works once size >= 1); with
        n_step > 1 each row's n-step return target inputs (see _n_step_batch)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = generator if generator is not None else np.random.default_rng()
        idx = rng.integers(0, self.size, size=batch_size)
        if n_step > 1:
            return self._n_step_batch(idx, n_step, gamma, device)
        return self.batch_from_rows(torch.from_numpy(self._data[idx]).to(device, non_blocking=True))

    def _n_step_batch(self, idx: np.ndarray, n_step: int, gamma: float, device) -> Batch:
        """Each sampled row followed for up to n_step rows of its own episode (the links add()
        made: same source, each row starting where the previous ended, no termination before):
        the discounted reward sum, the state it ends in and gamma ** steps. An episode's end, a
        time limit or a continuation already overwritten end the chain there, bootstrapping as
        one step would; other bridges' rows interleaved in between do not."""
        c, data = self._cols, self._data
        slots = np.empty((len(idx), n_step), dtype=np.int64)
        slots[:, 0] = idx
        steps = np.ones(len(idx), dtype=np.int64)  # rows in each chain so far
        going = np.ones(len(idx), dtype=bool)
        for k in range(1, n_step):
            following = self._next[slots[:, k - 1]]
            going &= following >= self.added - self.size  # linked (not -1) and still stored
            slots[:, k] = np.where(going, following % self.capacity, slots[:, k - 1])
            steps += going
        in_chain = np.arange(n_step)[None, :] < steps[:, None]
        rewards = data[slots, c["reward"].start] * in_chain * (gamma ** np.arange(n_step))[None, :]
        last = slots[np.arange(len(idx)), steps - 1]
        first = data[idx]

        def to(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

        return Batch(obs=to(first[:, c["obs"]]), action=to(first[:, c["action"]]),
                     reward=to(rewards.sum(axis=1)), next_obs=to(data[last, c["next_obs"]]),
                     terminated=to(data[last, c["terminated"].start]),
                     mc_return=to(first[:, c["mc_return"].start]), discount=to(gamma ** steps))

    def rows(self, slots: np.ndarray) -> np.ndarray:
        """A copy of the stored rows at ring positions `slots` ([len(slots), width] float32)."""
        return self._data[slots]

    def batch_from_rows(self, rows: torch.Tensor) -> Batch:
        """Column views of [B, width] rows as a Batch (whatever device they live on)."""
        c = self._cols
        return Batch(obs=rows[:, c["obs"]], action=rows[:, c["action"]], reward=rows[:, c["reward"].start],
                     next_obs=rows[:, c["next_obs"]], terminated=rows[:, c["terminated"].start],
                     mc_return=rows[:, c["mc_return"].start])

    def _ordered(self) -> np.ndarray:
        """Indices of stored transitions, oldest first."""
        start = self.cursor if self.size == self.capacity else 0
        return (start + np.arange(self.size)) % self.capacity

    def column(self, name: str) -> np.ndarray:
        """A copy of one column (obs, action, reward, next_obs, terminated, mc_return, source), oldest first."""
        idx = self._ordered()
        if name == "source":
            return self._source[idx].copy()
        if name not in self._cols:
            raise ValueError(f"unknown column {name!r}")
        out = self._data[idx][:, self._cols[name]]
        return out[:, 0].copy() if name in ("reward", "terminated", "mc_return") else out.copy()

    # ---------------------------------------------------------------- disk
    def save(self, path: str | os.PathLike) -> None:
        """Write atomically as safetensors; the ring position is kept in the header."""
        meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "capacity": str(self.capacity),
                "size": str(self.size), "cursor": str(self.cursor), "added": str(self.added),
                "obs_dim": str(self.obs_dim),
                "act_dim": str(self.act_dim), "columns": json.dumps({k: [v.start, v.stop] for k, v in self._cols.items()})}
        blob = st_save({"data": np.ascontiguousarray(self._data[:self.size]),
                        "source": np.ascontiguousarray(self._source[:self.size])}, metadata=meta)
        atomic_write_bytes(path, blob)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ReplayBuffer":
        """Read a file written by save(); any damage raises ReplayFileError naming the path."""
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ReplayFileError(f"{path}: cannot read replay file: {e}") from None
        try:
            meta = read_safetensors_metadata(raw)
            arrays = st_load(raw)
        except Exception as e:  # noqa: BLE001 -- the Rust loader raises several exception types
            raise ReplayFileError(f"{path}: not a valid replay file (truncated or corrupt?): {e}") from None
        if meta.get("format") != FORMAT:
            raise ReplayFileError(f"{path}: not a porl_ros replay file (format={meta.get('format')!r})")
        try:
            version = int(meta["format_version"])
            capacity, size, cursor = int(meta["capacity"]), int(meta["size"]), int(meta["cursor"])
            added = int(meta["added"])
            obs_dim, act_dim = int(meta["obs_dim"]), int(meta["act_dim"])
        except (KeyError, ValueError) as e:
            raise ReplayFileError(f"{path}: missing or bad header field: {e}") from None
        if version != FORMAT_VERSION:
            raise ReplayFileError(f"{path}: unsupported format_version {version} (expected {FORMAT_VERSION})")
        buf = cls(capacity, obs_dim, act_dim)
        data, source = arrays.get("data"), arrays.get("source")
        if data is None or source is None or data.dtype != np.float32 or source.dtype != np.int32 \
                or data.shape != (size, buf.width) or source.shape != (size,) \
                or not 0 <= size <= capacity or not 0 <= cursor < capacity \
                or (size < capacity and cursor != size % capacity) \
                or added < size or added % capacity != cursor:
            raise ReplayFileError(f"{path}: tensors do not match the header (capacity={capacity}, "
                                  f"size={size}, cursor={cursor})")
        buf._data[:size] = data
        buf._source[:size] = source
        buf.size, buf.cursor, buf.added = size, cursor, added
        for number in range(added - size, added):
            buf._link(int(buf._source[number % capacity]), number)
        return buf
