"""Crash-safe learner state: full checkpoints plus an append-only transition log.

Layout of a state directory (the learner uses `<run_dir>/state`):

    ckpt-<env_steps:012d>/        a full checkpoint, made visible by one directory rename
        agent.safetensors         PorlAgent.state_tensors(): actor, critics, targets, Adam,
                                  log_alpha, counters, phase, RNG states
        replay.safetensors        ReplayBuffer.save()
        checkpoint.json           "<sha256 of the rest>\\n" + JSON: PorlLearner bookkeeping,
                                  the log position it covers, sha256 of both tensor files
    log-<first_record:012d>.bin   transition-log segments; a new one starts at each checkpoint

A log record is `<u32 payload length><u32 crc32(payload)><payload>`. Payloads are either an
accepted transition or a published policy version. Records are appended as they happen
and fsync'd in batches (`sync()`); the lockstep learner syncs before each ack, so a
`kill -9` never loses an acknowledged transition. Recovery = newest checkpoint that
verifies + the log records after the position it covers; a torn or corrupt record ends
the log (it is cut off). A checkpoint that fails to verify is renamed `*.corrupt` and the
previous one is used (the last `keep` checkpoints, and the log segments they need, stay).

No pickle: tensors are safetensors, everything else JSON or fixed binary layouts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ._atomic import atomic_write_bytes, fsync_dir
from .replay import ReplayBuffer, ReplayFileError

FORMAT = "porl_ros.learner_state"
FORMAT_VERSION = 1
AGENT_FILE, REPLAY_FILE, MANIFEST_FILE = "agent.safetensors", "replay.safetensors", "checkpoint.json"
CKPT_PREFIX, LOG_PREFIX, LOG_SUFFIX = "ckpt-", "log-", ".bin"

_RECORD_HEADER = struct.Struct("<II")  # payload length, crc32(payload)
_KIND_TRANSITION, _KIND_POLICY_VERSION = 1, 2
# kind, source, seq, episode, step (-1: unknown), reward, terminated, truncated, success
_TRANSITION_HEAD = struct.Struct("<BIQQqf???")
_VERSION = struct.Struct("<BQ")
_MAX_RECORD = 1 << 26  # no sane transition is 64 MiB: a larger length is corruption


class LearnerStateError(ValueError):
    """A checkpoint or log that is missing, truncated, corrupt or does not fit (names the path)."""


@dataclass
class LoggedTransition:
    source: int
    seq: int
    episode: int
    step: Optional[int]
    state: np.ndarray
    action: np.ndarray
    reward: float
    next_state: np.ndarray
    terminated: bool
    truncated: bool
    success: bool


@dataclass
class LoggedPolicyVersion:
    version: int


@dataclass
class LoadedCheckpoint:
    path: Path
    agent_tensors: dict
    replay: ReplayBuffer
    bookkeeping: dict
    log_position: int  # log records covered by the checkpoint
    extra: dict


@dataclass
class RecoveryReport:
    checkpoint: Optional[Path]
    refused: list  # (path, reason) of checkpoints that failed to verify
    records_replayed: int
    torn_bytes_dropped: int


# ---------------------------------------------------------------------- log records
def encode_transition(t: LoggedTransition) -> bytes:
    head = _TRANSITION_HEAD.pack(_KIND_TRANSITION, t.source, t.seq, t.episode,
                                 -1 if t.step is None else t.step, t.reward, t.terminated, t.truncated, t.success)
    arrays = [np.ascontiguousarray(x, dtype=np.float32).tobytes() for x in (t.state, t.action, t.next_state)]
    return head + b"".join(arrays)


def decode_record(payload: bytes, obs_dim: int, act_dim: int):
    kind = payload[0] if payload else None
    if kind == _KIND_POLICY_VERSION and len(payload) == _VERSION.size:
        return LoggedPolicyVersion(_VERSION.unpack(payload)[1])
    expected = _TRANSITION_HEAD.size + 4 * (2 * obs_dim + act_dim)
    if kind == _KIND_TRANSITION and len(payload) == expected:
        _, source, seq, episode, step, reward, term, trunc, success = _TRANSITION_HEAD.unpack_from(payload)
        floats = np.frombuffer(payload, dtype=np.float32, offset=_TRANSITION_HEAD.size)
        return LoggedTransition(source, seq, episode, None if step < 0 else step, floats[:obs_dim].copy(),
                                floats[obs_dim:obs_dim + act_dim].copy(), reward, floats[obs_dim + act_dim:].copy(),
                                term, trunc, success)
    raise LearnerStateError(f"log record of kind {kind} and {len(payload)} bytes does not fit "
                            f"obs_dim={obs_dim}, act_dim={act_dim}")


def read_segment(path: Path) -> tuple[list[bytes], int, int]:
    """(payloads, valid byte length, bytes after the last valid record)."""
    data = path.read_bytes()
    payloads, pos = [], 0
    while pos + _RECORD_HEADER.size <= len(data):
        length, crc = _RECORD_HEADER.unpack_from(data, pos)
        start, end = pos + _RECORD_HEADER.size, pos + _RECORD_HEADER.size + length
        if length == 0 or length > _MAX_RECORD or end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        payloads.append(data[start:end])
        pos = end
    return payloads, pos, len(data) - pos


class TransitionLog:
    """Append-only segment of length+CRC records; `sync()` makes what was appended durable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "ab", buffering=0)
        fsync_dir(path.parent)
        self._buffer: list[bytes] = []
        self.unsynced = 0
        self.records = 0

    def append(self, payload: bytes) -> None:
        self._buffer.append(_RECORD_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        self.unsynced += 1
        self.records += 1

    def sync(self, fsync: bool = True) -> None:
        """One write (+ one fdatasync) for everything appended since the last sync.

        Written but not fsync'd survives a killed process (the kernel holds the page) but
        not a power loss; fsync'd survives both.
        """
        if self._buffer:
            self._file.write(b"".join(self._buffer))
            self._buffer.clear()
        if fsync and self.unsynced:
            os.fdatasync(self._file.fileno())
            self.unsynced = 0

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


# ---------------------------------------------------------------------- checkpoints
def _manifest_bytes(body: dict) -> bytes:
    text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest().encode() + b"\n" + text


def _read_manifest(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LearnerStateError(f"{path}: cannot read: {e}") from None
    digest, sep, text = raw.partition(b"\n")
    if not sep or hashlib.sha256(text).hexdigest().encode() != digest:
        raise LearnerStateError(f"{path}: checksum mismatch (truncated or corrupt)")
    try:
        body = json.loads(text.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LearnerStateError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise LearnerStateError(f"{path}: not a porl_ros learner checkpoint")
    if body.get("format_version") != FORMAT_VERSION:
        raise LearnerStateError(f"{path}: unsupported format_version {body.get('format_version')!r}")
    return body


class LearnerStateStore:
    """The state directory of one learner: checkpoints, log segments, recovery."""

    def __init__(self, directory: Union[str, os.PathLike], obs_dim: int, act_dim: int, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.dir = Path(directory)
        self.obs_dim, self.act_dim, self.keep = obs_dim, act_dim, keep
        self.log: Optional[TransitionLog] = None
        self.position = 0  # records in the log so far (checkpoint + replayed tail + appended)

    # ------------------------------------------------------------------ queries
    def has_state(self) -> bool:
        """Whether this directory already holds a run's checkpoints or log."""
        return self.dir.is_dir() and any(p.name.startswith((CKPT_PREFIX, LOG_PREFIX)) for p in self.dir.iterdir())

    def checkpoints(self) -> list[Path]:
        """Checkpoint directories, newest first (temporary and refused ones excluded)."""
        if not self.dir.is_dir():
            return []
        found = [p for p in self.dir.iterdir() if p.is_dir() and p.name.startswith(CKPT_PREFIX)
                 and p.name[len(CKPT_PREFIX):].isdigit()]
        return sorted(found, key=lambda p: int(p.name[len(CKPT_PREFIX):]), reverse=True)

    def segments(self) -> list[tuple[int, Path]]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in self.dir.iterdir():
            stem = p.name[len(LOG_PREFIX):-len(LOG_SUFFIX)]
            if p.name.startswith(LOG_PREFIX) and p.name.endswith(LOG_SUFFIX) and stem.isdigit():
                out.append((int(stem), p))
        return sorted(out)

    # ------------------------------------------------------------------ log
    def start_segment(self) -> None:
        """Close the current segment (synced) and append to a new one from `position` on."""
        if self.log is not None:
            self.log.close()
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{LOG_PREFIX}{self.position:012d}{LOG_SUFFIX}"
        if path.exists():  # left by a crash before any record reached it: nothing to keep
            path.unlink()
        self.log = TransitionLog(path)

    def log_transition(self, t: LoggedTransition) -> None:
        self.log.append(encode_transition(t))
        self.position += 1

    def log_policy_version(self, version: int) -> None:
        self.log.append(_VERSION.pack(_KIND_POLICY_VERSION, version))
        self.position += 1

    def sync(self, fsync: bool = True) -> None:
        if self.log is not None:
            self.log.sync(fsync)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def discard_if_empty(self) -> bool:
        """Remove what a start that stored nothing left (empty log segments, then the directory),
        so a failed start never makes the directory look like a run to resume. Closes the log.
        Returns whether the directory is gone; anything holding records is kept."""
        self.close()
        if self.checkpoints() or any(path.stat().st_size for _, path in self.segments()):
            return False
        for _, path in self.segments():
            path.unlink()
        try:
            self.dir.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False  # other files: not ours to delete
        return True

    # ------------------------------------------------------------------ checkpoints
    def write_checkpoint(self, agent_tensors: dict, replay: ReplayBuffer, bookkeeping: dict,
                         extra: Optional[dict] = None) -> Path:
        """Write a full checkpoint at the current log position, then rotate the log and prune.

        Files go into a temporary directory (each fsync'd), which one rename makes visible.
        """
        self.sync()  # the checkpoint must never be ahead of the log it claims to cover
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{CKPT_PREFIX}{int(bookkeeping['env_steps']):012d}"
        final, tmp = self.dir / name, self.dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        agent_blob = st_save(agent_tensors, metadata={"format": FORMAT})
        atomic_write_bytes(tmp / AGENT_FILE, agent_blob)
        replay.save(tmp / REPLAY_FILE)
        body = {"format": FORMAT, "format_version": FORMAT_VERSION, "log_position": self.position,
                "bookkeeping": bookkeeping, "extra": extra or {},
                "sha256": {AGENT_FILE: hashlib.sha256(agent_blob).hexdigest(),
                           REPLAY_FILE: hashlib.sha256((tmp / REPLAY_FILE).read_bytes()).hexdigest()}}
        atomic_write_bytes(tmp / MANIFEST_FILE, _manifest_bytes(body))
        if final.exists():  # same env_steps again (e.g. close() right after a periodic one)
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(self.dir)
        self.start_segment()
        self._prune()
        return final

    def _prune(self) -> None:
        kept = self.checkpoints()[: self.keep]
        for old in self.checkpoints()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        if not kept:
            return
        try:
            oldest_needed = min(_read_manifest(p / MANIFEST_FILE)["log_position"] for p in kept)
        except LearnerStateError:
            return  # keep every segment rather than guess
        segments = self.segments()
        for i, (first, path) in enumerate(segments):
            next_first = segments[i + 1][0] if i + 1 < len(segments) else None
            if next_first is not None and next_first <= oldest_needed and self.log is not None \
                    and path != self.log.path:
                path.unlink()

    def load_checkpoint(self, path: Path) -> LoadedCheckpoint:
        """Read and verify one checkpoint directory; any damage raises LearnerStateError."""
        body = _read_manifest(path / MANIFEST_FILE)
        blobs = {}
        for name in (AGENT_FILE, REPLAY_FILE):
            try:
                blobs[name] = (path / name).read_bytes()
            except OSError as e:
                raise LearnerStateError(f"{path / name}: cannot read: {e}") from None
            if hashlib.sha256(blobs[name]).hexdigest() != body.get("sha256", {}).get(name):
                raise LearnerStateError(f"{path / name}: checksum mismatch (truncated or corrupt)")
        try:
            tensors = st_load(blobs[AGENT_FILE])
            replay = ReplayBuffer.load(path / REPLAY_FILE)
        except ReplayFileError as e:
            raise LearnerStateError(str(e)) from None
        except Exception as e:  # noqa: BLE001 -- the Rust loader raises several exception types
            raise LearnerStateError(f"{path / AGENT_FILE}: not valid safetensors: {e}") from None
        if (replay.obs_dim, replay.act_dim) != (self.obs_dim, self.act_dim):
            raise LearnerStateError(f"{path}: replay is for obs_dim={replay.obs_dim}, act_dim={replay.act_dim}; "
                                    f"this learner has obs_dim={self.obs_dim}, act_dim={self.act_dim}")
        try:
            position = int(body["log_position"])
            bookkeeping = dict(body["bookkeeping"])
        except (KeyError, TypeError, ValueError) as e:
            raise LearnerStateError(f"{path / MANIFEST_FILE}: missing or bad field {e}") from None
        return LoadedCheckpoint(path, tensors, replay, bookkeeping, position, dict(body.get("extra") or {}))

    def latest_valid_checkpoint(self, on_refused=None) -> tuple[Optional[LoadedCheckpoint], list]:
        """The newest checkpoint that verifies; refused ones are renamed `<name>.corrupt`."""
        refused = []
        for path in self.checkpoints():
            try:
                return self.load_checkpoint(path), refused
            except LearnerStateError as e:
                refused.append((path, str(e)))
                if on_refused is not None:
                    on_refused(path, str(e))
                target = path.with_name(path.name + ".corrupt")
                shutil.rmtree(target, ignore_errors=True)
                os.rename(path, target)
        return None, refused

    def log_tail(self, from_position: int) -> tuple[Iterator, int]:
        """Decoded records at positions >= from_position (in order), and torn bytes dropped.

        The log ends at its first torn or corrupt record: that segment is cut there and any
        later segment (which could only follow a gap) is removed.
        """
        records, dropped, broken = [], 0, False
        for first, path in self.segments():
            if broken:
                dropped += path.stat().st_size
                path.unlink()
                continue
            payloads, valid, torn = read_segment(path)
            if torn:
                dropped += torn
                with open(path, "r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
                broken = True
            for i, payload in enumerate(payloads):
                if first + i >= from_position:
                    records.append((first + i, decode_record(payload, self.obs_dim, self.act_dim)))
        # Positions must run on without holes from the checkpoint's position.
        expected = from_position
        for position, _ in records:
            if position != expected:
                raise LearnerStateError(f"{self.dir}: transition log has a hole at record {expected} "
                                        f"(next found: {position})")
            expected += 1
        return iter(records), dropped


# ---------------------------------------------------------------------- resume
def bridge_positions(directory: Union[str, os.PathLike]) -> dict[int, tuple[int, int]]:
    """Where each bridge of the run stored in `directory` goes on: bridge id -> (next seq, next
    episode), read from the checkpoints' bookkeeping and the transition log (the records' fixed
    heads only, so no sizes are needed). The episode in progress when the run stopped is not
    continued (the simulator's state is gone): the next one is a new episode, seeded anew.
    Read-only: unlike a resume, it repairs nothing."""
    store = LearnerStateStore(directory, 0, 0)
    out: dict[int, list[int]] = {}

    def note(source: int, next_seq: int, next_episode: int) -> None:
        seq, episode = out.get(source, (0, 0))
        out[source] = [max(seq, next_seq), max(episode, next_episode)]

    for path in store.checkpoints():
        try:
            book = _read_manifest(path / MANIFEST_FILE)["bookkeeping"]
            for source, next_seq in enumerate(book["next_seq"]):
                note(source, int(next_seq), 0)
            for source, (episode, _step) in (book.get("last_position") or {}).items():
                note(int(source), 0, int(episode) + 1)
            for record in book.get("episodes") or []:
                note(int(record["source"]), 0, int(record["episode"]) + 1)
        except (LearnerStateError, KeyError, TypeError, ValueError):
            continue  # the learner refuses it too, and falls back to an older one
        break
    for _, path in store.segments():
        payloads, _, torn = read_segment(path)
        for payload in payloads:
            if payload[0] == _KIND_TRANSITION and len(payload) >= _TRANSITION_HEAD.size:
                _, source, seq, episode, *_ = _TRANSITION_HEAD.unpack_from(payload)
                note(source, seq + 1, episode + 1)
        if torn:
            break  # the log ends at its first torn record
    return {source: (seq, episode) for source, (seq, episode) in out.items()}


def resume_learner(learner, store: LearnerStateStore, log=None) -> RecoveryReport:
    """Bring a freshly built PorlLearner to the state in `store`: the newest checkpoint that
    verifies, then the log records after it, re-added exactly as they first arrived.

    `log(level, text)` receives what a user should see ("error" for refused checkpoints).
    Raises LearnerStateError when the state cannot be used at all (e.g. sizes differ).
    """
    from .learner import TransitionRejected  # the learner module does not depend on this one

    say = log if log is not None else (lambda level, text: None)
    ckpt, refused = store.latest_valid_checkpoint(
        on_refused=lambda path, why: say("error", f"refusing checkpoint {path}: {why}; trying an older one"))
    position = 0
    if ckpt is not None:
        try:
            learner.agent.load_state_tensors(ckpt.agent_tensors)
            learner.load_bookkeeping_state(ckpt.bookkeeping)
        except ValueError as e:
            raise LearnerStateError(f"{ckpt.path}: {e}") from None
        if ckpt.replay.capacity != learner.replay.capacity:
            say("warning", f"replay capacity {ckpt.replay.capacity} from the checkpoint is kept "
                           f"(the configured {learner.replay.capacity} is ignored on resume)")
        learner.replay = ckpt.replay
        position = ckpt.log_position
    records, torn = store.log_tail(position)
    if torn:
        say("warning", f"transition log: dropped a torn last record ({torn} bytes, never acknowledged)")
    replayed = 0
    for replayed, (index, record) in enumerate(records, 1):
        position = index + 1
        if isinstance(record, LoggedPolicyVersion):
            learner.policy_version = max(learner.policy_version, record.version)
            continue
        try:
            learner.add_transition(record.source, record.seq, record.episode, record.state, record.action,
                                   record.reward, record.next_state, record.terminated, record.truncated,
                                   record.success, step=record.step)
        except TransitionRejected as e:
            say("error", f"transition log record {index} refused on replay: {e}")
    store.position = position
    return RecoveryReport(ckpt.path if ckpt else None, refused, replayed, torn)
