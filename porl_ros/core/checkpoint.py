"""Actor checkpoints: a directory with actor.safetensors + meta.json, or one safetensors blob.

No pickle anywhere: tensors are safetensors, metadata is JSON. A loader is told what it
expects (obs_dim, act_dim, ...) and refuses a checkpoint that does not match, naming the
field and both values, so a policy for the wrong robot never runs.

Every checkpoint carries the SHA-256 of its tensors in its metadata (`weights_sha256`:
of the whole actor.safetensors file in the directory format, of the tensor data section
in the bytes format) and every load verifies it: a flipped bit, a torn write or a
weights file from another checkpoint is refused with an error naming the file, never
fine-tuned or deployed.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ._atomic import atomic_write_bytes, read_safetensors_metadata
from .device import resolve_device
from .networks import SquashedGaussianActor

FORMAT_VERSION = 1
ACTOR_FILE = "actor.safetensors"
META_FILE = "meta.json"
_META_KEY = "porl_ros.policy_meta"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not match what the caller expects."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class PolicyMeta:
    """What a policy is for; stored beside its weights."""

    obs_dim: int
    act_dim: int
    action_low: list[float]
    action_high: list[float]
    actor_hidden: list[int]
    obs_normalisation: bool = False
    env_id: str = ""
    policy_version: int = 0
    created: str = field(default_factory=_now)
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    weights_sha256: str = ""  # set by the writer; verified by every loader

    @classmethod
    def for_actor(cls, actor: SquashedGaussianActor, env_id: str = "", policy_version: int = 0,
                  extra: Optional[dict[str, Any]] = None) -> "PolicyMeta":
        """Metadata describing `actor` (sizes, bounds, whether it normalises observations)."""
        normalises = bool((actor.obs_mean != 0).any() or (actor.obs_std != 1).any())
        return cls(obs_dim=actor.obs_dim, act_dim=actor.act_dim,
                   action_low=[float(x) for x in actor.action_low.cpu()],
                   action_high=[float(x) for x in actor.action_high.cpu()],
                   actor_hidden=list(actor.hidden), obs_normalisation=normalises, env_id=env_id,
                   policy_version=policy_version,
                   extra={"log_std_min": actor.log_std_min, "log_std_max": actor.log_std_max, **(extra or {})})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> "PolicyMeta":
        if not isinstance(d, Mapping):
            raise CheckpointError(f"{where}: metadata is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        required = ("obs_dim", "act_dim", "action_low", "action_high", "actor_hidden")
        missing = [k for k in required if k not in d]
        if missing:
            raise CheckpointError(f"{where}: metadata lacks field(s) {', '.join(missing)}")
        try:
            meta = cls(**{k: v for k, v in d.items() if k in names})
            meta.obs_dim, meta.act_dim = int(meta.obs_dim), int(meta.act_dim)
            meta.action_low = [float(x) for x in meta.action_low]
            meta.action_high = [float(x) for x in meta.action_high]
            meta.actor_hidden = [int(x) for x in meta.actor_hidden]
            meta.format_version = int(meta.format_version)
            meta.policy_version = int(meta.policy_version)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: bad metadata: {e}") from None
        if meta.format_version > FORMAT_VERSION:
            raise CheckpointError(f"{where}: format_version {meta.format_version} is newer than "
                                  f"supported ({FORMAT_VERSION})")
        if len(meta.action_low) != meta.act_dim or len(meta.action_high) != meta.act_dim:
            raise CheckpointError(f"{where}: action bounds do not have act_dim={meta.act_dim} values")
        return meta


def _check_expect(meta: PolicyMeta, expect: Any, where: str) -> None:
    """Compare metadata to what the caller expects; a mismatch names field and both values."""
    if expect is None:
        return
    items = dataclasses.asdict(expect).items() if dataclasses.is_dataclass(expect) else dict(expect).items()
    ignore = {"created", "policy_version", "extra", "format_version", "weights_sha256"} if dataclasses.is_dataclass(expect) else set()
    for key, want in items:
        if key in ignore:
            continue
        if not hasattr(meta, key):
            raise CheckpointError(f"{where}: unknown expected field {key!r}")
        got = getattr(meta, key)
        if key in ("action_low", "action_high"):
            want_l = [float(x) for x in want]
            ok = len(want_l) == len(got) and all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
                                                 for a, b in zip(got, want_l))
        elif key == "actor_hidden":
            ok = [int(x) for x in want] == list(got)
        else:
            ok = got == want
        if not ok:
            raise CheckpointError(f"{where}: {key} mismatch: checkpoint has {got!r}, expected {want!r}")


def _build_actor(meta: PolicyMeta, tensors: dict[str, torch.Tensor], device: str | torch.device,
                 where: str) -> SquashedGaussianActor:
    try:
        extra = meta.extra if isinstance(meta.extra, dict) else {}
        actor = SquashedGaussianActor(meta.obs_dim, meta.act_dim, meta.actor_hidden,
                                      meta.action_low, meta.action_high,
                                      log_std_min=float(extra.get("log_std_min", -5.0)),
                                      log_std_max=float(extra.get("log_std_max", 2.0)))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: metadata describes an invalid actor: {e}") from None
    sd = actor.state_dict()
    missing = sorted(set(sd) - set(tensors))
    unexpected = sorted(set(tensors) - set(sd))
    if missing or unexpected:
        raise CheckpointError(f"{where}: tensor names do not match the actor: missing {missing}, "
                              f"unexpected {unexpected}")
    for k, v in sd.items():
        if tensors[k].shape != v.shape:
            raise CheckpointError(f"{where}: tensor {k} has shape {tuple(tensors[k].shape)}, "
                                  f"expected {tuple(v.shape)} from the metadata")
        if not torch.isfinite(tensors[k]).all():
            raise CheckpointError(f"{where}: tensor {k} contains non-finite values")
    actor.load_state_dict({k: t.to(torch.float32) for k, t in tensors.items()})
    if not (torch.allclose(actor.action_low, torch.tensor(meta.action_low), atol=1e-5)
            and torch.allclose(actor.action_high, torch.tensor(meta.action_high), atol=1e-5)):
        raise CheckpointError(f"{where}: action bounds in the tensors differ from the metadata")
    return actor.to(resolve_device(device)).eval()


def _tensors(actor: SquashedGaussianActor) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in actor.state_dict().items()}


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify_checksum(meta: PolicyMeta, data: bytes | memoryview, where: str) -> None:
    """Refuse weights whose SHA-256 is not the one their metadata recorded."""
    if not meta.weights_sha256:
        raise CheckpointError(f"{where}: the metadata has no weights_sha256, so the weights cannot be "
                              f"verified (written by hand or by an older porl_ros?); re-save the actor with "
                              f"porl_ros.core.checkpoint.save_actor")
    actual = _sha256(data)
    if actual != meta.weights_sha256:
        raise CheckpointError(f"{where}: checksum mismatch: the weights' SHA-256 is {actual[:16]}..., the "
                              f"metadata recorded {meta.weights_sha256[:16]}... (corrupt, truncated or "
                              f"replaced file); refusing to load it")


# ------------------------------------------------------------------ directory format
def save_actor(directory: str | os.PathLike, actor: SquashedGaussianActor,
               meta: Optional[PolicyMeta] = None) -> PolicyMeta:
    """Write actor.safetensors then meta.json (with the weights' SHA-256), each atomically;
    returns the meta written. A crash between the two leaves a pair whose checksum does not
    match, which every loader refuses."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    blob = st_save(_tensors(actor))
    meta = dataclasses.replace(meta if meta is not None else PolicyMeta.for_actor(actor),
                               weights_sha256=_sha256(blob))
    atomic_write_bytes(os.path.join(directory, ACTOR_FILE), blob)
    atomic_write_bytes(os.path.join(directory, META_FILE), (meta.to_json() + "\n").encode())
    return meta


def load_actor(directory: str | os.PathLike, device: str | torch.device = "cpu",
               expect: Any = None) -> tuple[SquashedGaussianActor, PolicyMeta]:
    """Load and verify; every failure is a CheckpointError naming the path."""
    directory = os.fspath(directory)
    weights_path, meta_path = os.path.join(directory, ACTOR_FILE), os.path.join(directory, META_FILE)
    try:
        with open(meta_path, "rb") as f:
            raw_meta = f.read()
        with open(weights_path, "rb") as f:
            raw_weights = f.read()
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot read checkpoint: {e}") from None
    try:
        meta_dict = json.loads(raw_meta.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path}: invalid JSON: {e}") from None
    meta = PolicyMeta.from_dict(meta_dict, meta_path)
    _check_expect(meta, expect, meta_path)
    _verify_checksum(meta, raw_weights, weights_path)
    try:
        tensors = st_load(raw_weights)
    except Exception as e:  # noqa: BLE001 -- the Rust loader raises several exception types
        raise CheckpointError(f"{weights_path}: corrupt or truncated safetensors: {e}") from None
    return _build_actor(meta, tensors, device, weights_path), meta


# ------------------------------------------------------------------ bytes (ROS topic)
def actor_to_bytes(actor: SquashedGaussianActor, meta: Optional[PolicyMeta] = None) -> bytes:
    """One safetensors blob with the PolicyMeta JSON (and the SHA-256 of the tensor data
    section) inside its header metadata."""
    tensors = _tensors(actor)
    data_section = st_save(tensors)
    data_section = data_section[8 + _header_length(data_section):]
    meta = dataclasses.replace(meta if meta is not None else PolicyMeta.for_actor(actor),
                               weights_sha256=_sha256(data_section))
    return st_save(tensors, metadata={_META_KEY: meta.to_json()})


def _header_length(blob: bytes) -> int:
    return int.from_bytes(blob[:8], "little")


def actor_from_bytes(data: bytes, device: str | torch.device = "cpu",
                     expect: Any = None) -> tuple[SquashedGaussianActor, PolicyMeta]:
    where = "<policy bytes>"
    data = bytes(data)
    try:
        header = read_safetensors_metadata(data)
        tensors = st_load(data)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{where}: corrupt or truncated safetensors blob: {e}") from None
    if _META_KEY not in header:
        raise CheckpointError(f"{where}: no {_META_KEY} in the safetensors header")
    try:
        meta_dict = json.loads(header[_META_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{where}: invalid metadata JSON: {e}") from None
    meta = PolicyMeta.from_dict(meta_dict, where)
    _check_expect(meta, expect, where)
    _verify_checksum(meta, memoryview(data)[8 + _header_length(data):], where)
    return _build_actor(meta, tensors, device, where), meta
