"""Actor checkpoints on disk and as bytes: exact round trips, refusals that name the problem."""

import json
import os

import numpy as np
import pytest
import torch

from porl_ros.core.checkpoint import (CheckpointError, PolicyMeta, actor_from_bytes, actor_to_bytes,
                                      load_actor, save_actor)
from porl_ros.core.networks import SquashedGaussianActor


@pytest.fixture
def actor():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        a = SquashedGaussianActor(5, 2, (32, 16), [-1.0, 0.0], [1.0, 4.0],
                                  obs_mean=np.arange(5.0), obs_std=np.full(5, 2.0))
        # Perturb so a fresh actor would not pass by chance.
        for p in a.parameters():
            p.data.add_(torch.randn_like(p) * 0.1)
    return a


OBS = np.random.default_rng(0).normal(size=(16, 5)).astype(np.float32) * 3


def same_actions(a, b):
    np.testing.assert_array_equal(a.act(OBS, deterministic=True), b.act(OBS, deterministic=True))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    np.testing.assert_array_equal(a.act(OBS, False, g1), b.act(OBS, False, g2))


def test_disk_round_trip_identical_actions(actor, tmp_path):
    meta = PolicyMeta.for_actor(actor, env_id="metaworld/push-v3", policy_version=7, extra={"note": "bc"})
    save_actor(tmp_path / "ckpt", actor, meta)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["actor.safetensors", "meta.json"]
    loaded, m = load_actor(tmp_path / "ckpt", expect={"obs_dim": 5, "act_dim": 2})
    same_actions(actor, loaded)
    assert m.env_id == "metaworld/push-v3" and m.policy_version == 7 and m.extra["note"] == "bc"
    assert m.obs_normalisation is True and m.action_high == [1.0, 4.0] and m.actor_hidden == [32, 16]
    assert m.format_version == 1 and m.created
    torch.testing.assert_close(loaded.obs_mean, actor.obs_mean, rtol=0, atol=0)
    # A full PolicyMeta works as `expect` too (created/version ignored).
    load_actor(tmp_path / "ckpt", expect=PolicyMeta.for_actor(actor, env_id="metaworld/push-v3"))


def test_bytes_round_trip_identical_actions(actor):
    blob = actor_to_bytes(actor, PolicyMeta.for_actor(actor, policy_version=3))
    assert isinstance(blob, bytes)
    loaded, meta = actor_from_bytes(blob, expect={"act_dim": 2})
    same_actions(actor, loaded)
    assert meta.policy_version == 3


@pytest.mark.parametrize("field,value", [("obs_dim", 39), ("act_dim", 4), ("env_id", "other"),
                                         ("action_high", [1.0, 5.0]), ("actor_hidden", [256, 256])])
def test_expect_mismatch_names_field_and_values(actor, tmp_path, field, value):
    save_actor(tmp_path, actor)
    with pytest.raises(CheckpointError, match=field) as e:
        load_actor(tmp_path, expect={field: value})
    assert str(value) in str(e.value)
    with pytest.raises(CheckpointError, match=field):
        actor_from_bytes(actor_to_bytes(actor), expect={field: value})


def test_tensor_shapes_must_match_metadata(actor, tmp_path):
    save_actor(tmp_path, actor)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["actor_hidden"] = [32, 32]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"trunk\.2\.weight.*\(16, 32\).*\(32, 32\)"):
        load_actor(tmp_path)


def test_damaged_checkpoints_raise_checkpoint_error_naming_path(actor, tmp_path):
    save_actor(tmp_path, actor)
    weights = tmp_path / "actor.safetensors"
    good = weights.read_bytes()
    for blob in (good[: len(good) // 2], good[:10], b"", b"\xff" * 64):
        weights.write_bytes(blob)
        with pytest.raises(CheckpointError, match="actor.safetensors"):
            load_actor(tmp_path)
    weights.write_bytes(good)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json"):
        load_actor(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"obs_dim": 5}))
    with pytest.raises(CheckpointError, match="act_dim"):
        load_actor(tmp_path)
    os.remove(tmp_path / "meta.json")
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_actor(tmp_path)
    with pytest.raises(CheckpointError):
        load_actor(tmp_path / "nowhere")
    blob = actor_to_bytes(actor)
    for bad in (blob[:-7], blob[:30], b"", b"junk" * 10):
        with pytest.raises(CheckpointError, match="policy bytes"):
            actor_from_bytes(bad)
    assert issubclass(CheckpointError, ValueError)


def test_non_finite_weights_refused(actor):
    with torch.no_grad():
        actor.mu.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="mu.weight"):
        actor_from_bytes(actor_to_bytes(actor))


def test_save_is_atomic_and_overwrites(actor, tmp_path):
    save_actor(tmp_path, actor, PolicyMeta.for_actor(actor, policy_version=1))
    save_actor(tmp_path, actor, PolicyMeta.for_actor(actor, policy_version=2))
    assert load_actor(tmp_path)[1].policy_version == 2
    assert sorted(os.listdir(tmp_path)) == ["actor.safetensors", "meta.json"]


@pytest.mark.parametrize("damage", ["flip_one_bit", "xor_64_bytes"])
def test_corrupt_weights_in_the_middle_are_refused_naming_the_file(actor, tmp_path, damage):
    """A bit flip inside a tensor still parses as safetensors: only the checksum catches it."""
    save_actor(tmp_path, actor)
    weights = tmp_path / "actor.safetensors"
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    if damage == "flip_one_bit":
        data[middle] ^= 0x04
    else:
        for i in range(middle, middle + 64):
            data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"actor\.safetensors: checksum mismatch"):
        load_actor(tmp_path)


def test_checkpoint_without_checksum_is_refused(actor, tmp_path):
    save_actor(tmp_path, actor)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert len(meta["weights_sha256"]) == 64
    del meta["weights_sha256"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no weights_sha256"):
        load_actor(tmp_path)


def test_weights_from_another_checkpoint_are_refused(actor, tmp_path):
    """A torn save (new weights, old meta.json) or a swapped file does not load."""
    save_actor(tmp_path / "a", actor)
    with torch.no_grad():
        actor.mu.bias.add_(0.5)
    save_actor(tmp_path / "b", actor)
    os.replace(tmp_path / "b" / "actor.safetensors", tmp_path / "a" / "actor.safetensors")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_actor(tmp_path / "a")


def test_bytes_with_a_flipped_tensor_bit_are_refused(actor):
    blob = bytearray(actor_to_bytes(actor))
    blob[-100] ^= 0x01  # inside the tensor data section
    with pytest.raises(CheckpointError, match="policy bytes.*checksum mismatch"):
        actor_from_bytes(bytes(blob))
