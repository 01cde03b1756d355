"""ReplayBuffer: validation, ring wrap-around, sampling, crash-safe safetensors save/load."""

import os

import numpy as np
import pytest
import torch

from porl_ros.core.replay import ReplayBuffer, ReplayFileError


def filled(n: int, capacity: int, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    rb = ReplayBuffer(capacity, 3, 2)
    for i in range(n):
        rb.add(rng.normal(size=3), rng.uniform(-1, 1, 2), float(i), rng.normal(size=3), bool(i % 3 == 0),
               source=i % 4)
    return rb


def snapshot(rb: ReplayBuffer) -> dict:
    return {c: rb.column(c) for c in ("obs", "action", "reward", "next_obs", "terminated", "source")} | {
        "size": rb.size, "cursor": rb.cursor}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_wrap_around_keeps_latest_capacity_transitions():
    rb = filled(25, capacity=10)
    assert len(rb) == 10 and rb.cursor == 5
    np.testing.assert_array_equal(rb.column("reward"), np.arange(15, 25, dtype=np.float32))
    np.testing.assert_array_equal(rb.column("source"), np.arange(15, 25) % 4)
    np.testing.assert_array_equal(rb.column("terminated"), (np.arange(15, 25) % 3 == 0).astype(np.float32))


@pytest.mark.parametrize("field,kwargs", [
    ("obs", dict(obs=np.zeros(4))),
    ("obs", dict(obs=np.array([0.0, np.nan, 0.0]))),
    ("action", dict(action=np.zeros((1, 2)))),
    ("action", dict(action=np.array([np.inf, 0.0]))),
    ("reward", dict(reward=float("nan"))),
    ("reward", dict(reward=np.zeros(2))),
    ("next_obs", dict(next_obs=np.array([0.0, 0.0, -np.inf]))),
    ("terminated", dict(terminated=0.5)),
    ("source", dict(source=-1)),
])
def test_bad_add_raises_naming_field_and_changes_nothing(field, kwargs):
    rb = filled(12, capacity=10)
    before = snapshot(rb)
    good = dict(obs=np.zeros(3), action=np.zeros(2), reward=0.0, next_obs=np.zeros(3), terminated=False)
    with pytest.raises(ValueError, match=field):
        rb.add(**(good | kwargs))
    assert_same(snapshot(rb), before)
    raw_before = rb._data.copy()
    with pytest.raises(ValueError):
        rb.add(**(good | kwargs))
    np.testing.assert_array_equal(rb._data, raw_before)  # not even the slot at the cursor


def test_sample_is_uniform_and_on_device():
    rb = ReplayBuffer(50, 3, 2)
    for i in range(50):
        rb.add(np.full(3, i), np.full(2, i / 50), float(i), np.full(3, i + 1), i == 49)
    gen = np.random.default_rng(0)
    b = rb.sample(20000, "cpu", gen)
    assert b.obs.shape == (20000, 3) and b.action.shape == (20000, 2) and b.reward.shape == (20000,)
    assert b.next_obs.shape == (20000, 3) and b.terminated.shape == (20000,)
    assert b.obs.dtype == torch.float32
    # Each row is a consistent transition.
    torch.testing.assert_close(b.obs[:, 0], b.reward)
    torch.testing.assert_close(b.next_obs[:, 0], b.reward + 1)
    torch.testing.assert_close(b.terminated, (b.reward == 49).float())
    counts = torch.bincount(b.reward.long(), minlength=50).float()
    p, n = 1 / 50, 20000
    assert torch.all((counts - n * p).abs() < 5 * (n * p * (1 - p)) ** 0.5)
    # Same generator seed -> same batch.
    b2 = rb.sample(20000, "cpu", np.random.default_rng(0))
    assert torch.equal(b.obs, b2.obs)
    with pytest.raises(ValueError):
        ReplayBuffer(5, 3, 2).sample(4)


def test_save_load_round_trip_exact(tmp_path):
    for n in (0, 7, 25):  # empty, partial, wrapped
        rb = filled(n, capacity=10)
        path = tmp_path / f"replay{n}.safetensors"
        rb.save(path)
        back = ReplayBuffer.load(path)
        assert (back.capacity, back.obs_dim, back.act_dim) == (10, 3, 2)
        assert_same(snapshot(back), snapshot(rb))
        # And it continues identically.
        for buf in (rb, back):
            buf.add(np.ones(3), np.zeros(2), 99.0, np.ones(3), True, source=2)
        assert_same(snapshot(back), snapshot(rb))
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []  # no temp files left
    with open(path, "rb") as f:
        assert b"pickle" not in f.read()[:8]


def test_truncated_or_corrupt_file_gives_clear_error(tmp_path):
    path = tmp_path / "r.safetensors"
    filled(25, capacity=10).save(path)
    data = path.read_bytes()
    for name, blob in [("truncated", data[: len(data) // 2]), ("header", data[:20]), ("empty", b""),
                       ("garbage", b"\x00" * 100), ("bitflip", data[:8] + b"{" * 20 + data[28:])]:
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(blob)
        with pytest.raises(ReplayFileError, match=str(bad)):
            ReplayBuffer.load(bad)
    with pytest.raises(ReplayFileError, match="missing"):
        ReplayBuffer.load(tmp_path / "missing.safetensors")
    assert issubclass(ReplayFileError, ValueError)


def test_save_replaces_atomically(tmp_path):
    path = tmp_path / "r.safetensors"
    filled(5, capacity=10).save(path)
    filled(9, capacity=10, seed=1).save(path)
    assert len(ReplayBuffer.load(path)) == 9
    assert sorted(os.listdir(tmp_path)) == ["r.safetensors"]


def test_mc_returns_are_set_by_insert_number_and_skip_overwritten_rows(tmp_path):
    rb = ReplayBuffer(4, 3, 2)
    numbers = [rb.add(np.zeros(3), np.zeros(2), 0.0, np.zeros(3), False) for _ in range(6)]
    assert numbers == list(range(6)) and rb.added == 6
    assert rb.set_mc_returns(numbers, np.arange(6.0)) == 4  # 0 and 1 were overwritten by the ring
    np.testing.assert_array_equal(rb.column("mc_return"), [2, 3, 4, 5])
    with pytest.raises(ValueError, match="NaN"):
        rb.set_mc_returns([5], [float("nan")])
    rb.save(tmp_path / "r.safetensors")
    loaded = ReplayBuffer.load(tmp_path / "r.safetensors")
    np.testing.assert_array_equal(loaded.column("mc_return"), [2, 3, 4, 5])
    assert loaded.added == 6 and loaded.sample(8).mc_return.shape == (8,)
