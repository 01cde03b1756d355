"""Crash-safe learner state without ROS: checkpoints, the transition log, resume, validation."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from porl_ros.core.config import PorlConfig
from porl_ros.core.learner import TransitionRejected, build_learner
from porl_ros.core.learner_state import (AGENT_FILE, MANIFEST_FILE, REPLAY_FILE, LearnerStateError,
                                         LearnerStateStore, LoggedTransition, read_segment, resume_learner)
from porl_ros.core.networks import SquashedGaussianActor

OBS, ACT = 6, 2
torch.set_num_threads(1)  # tiny networks: threads only contend on the shared CI cores


def make_learner(presample_steps: int = 30, num_sources: int = 1):
    config = PorlConfig(n_critics=2, critic_hidden=(32, 32), actor_hidden=(32, 32), batch_size=16,
                        learning_starts=16, utd_ratio=2, presample_steps=presample_steps, device="cpu", seed=3)
    torch.manual_seed(0)
    actor = SquashedGaussianActor(OBS, ACT, (32, 32), -np.ones(ACT), np.ones(ACT))
    return build_learner(actor, config, replay_capacity=500, num_sources=num_sources, weights_every_env_steps=5)


def transition(i: int, source: int = 0, episode_len: int = 10) -> LoggedTransition:
    rng = np.random.default_rng(i)
    return LoggedTransition(source, i, i // episode_len, i % episode_len, rng.normal(size=OBS).astype(np.float32),
                            rng.uniform(-1, 1, ACT).astype(np.float32), float(np.float32(rng.normal())),
                            rng.normal(size=OBS).astype(np.float32), False, i % episode_len == episode_len - 1,
                            bool(i % 3 == 0))


def feed(learner, store, steps):
    """What the learner node does per transition: add, log, train, publish when due."""
    for i in steps:
        t = transition(i)
        learner.add_transition(t.source, t.seq, t.episode, t.state, t.action, t.reward, t.next_state,
                               t.terminated, t.truncated, t.success, step=t.step)
        store.log_transition(t)
        learner.train()
        if learner.weights_due():
            store.log_policy_version(learner.mark_weights_published())
        store.sync()


def checkpoint(learner, store):
    return store.write_checkpoint(learner.agent.state_tensors(), learner.replay, learner.bookkeeping_state())


def assert_same_state(a, b):
    ta, tb = a.agent.state_tensors(), b.agent.state_tensors()
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    for col in ("obs", "action", "reward", "next_obs", "terminated", "source"):
        assert np.array_equal(a.replay.column(col), b.replay.column(col)), col
    assert a.bookkeeping_state() == b.bookkeeping_state()
    assert a.phase == b.phase


def test_resume_from_checkpoint_continues_bit_for_bit(tmp_path):
    """Checkpoint at step 40 (after pre-sample ended at 30); resume; 20 more steps equal the uninterrupted run."""
    original, store = make_learner(), LearnerStateStore(tmp_path / "state", OBS, ACT)
    store.start_segment()
    feed(original, store, range(40))
    checkpoint(original, store)
    store.close()
    assert original.phase == "finetune" and original.policy_version > 0

    resumed, store2 = make_learner(), LearnerStateStore(tmp_path / "state", OBS, ACT)
    report = resume_learner(resumed, store2)
    assert report.checkpoint is not None and report.records_replayed == 0
    assert_same_state(original, resumed)

    store2.start_segment()
    other = LearnerStateStore(tmp_path / "other", OBS, ACT)
    other.start_segment()
    feed(original, other, range(40, 60))
    feed(resumed, store2, range(40, 60))
    assert_same_state(original, resumed)


def test_resume_replays_the_log_tail_after_the_checkpoint(tmp_path):
    original, store = make_learner(), LearnerStateStore(tmp_path / "state", OBS, ACT)
    store.start_segment()
    feed(original, store, range(25))
    checkpoint(original, store)
    feed(original, store, range(25, 47))  # crosses T=30 after the checkpoint; no checkpoint: "kill -9"
    last_version = original.policy_version
    # A torn record: the process died in the middle of a write that was never acked.
    with open(store.log.path, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34")
    resumed, store2 = make_learner(), LearnerStateStore(tmp_path / "state", OBS, ACT)
    report = resume_learner(resumed, store2)
    assert report.torn_bytes_dropped == 6
    assert resumed.env_steps == 47 and len(resumed.replay) == 47 and resumed.phase == "finetune"
    assert resumed.next_seq == [47] and resumed.policy_version == last_version
    for col in ("obs", "action", "reward", "next_obs"):
        assert np.array_equal(original.replay.column(col), resumed.replay.column(col))
    # Episode statistics survive: same episodes closed, same returns.
    assert [(e.episode, e.episode_return, e.success) for e in original.episodes] == \
        [(e.episode, e.episode_return, e.success) for e in resumed.episodes]
    # Appending goes on after the recovered position; a second resume sees everything.
    store2.start_segment()
    feed(resumed, store2, range(47, 50))
    store2.close()
    again = make_learner()
    resume_learner(again, LearnerStateStore(tmp_path / "state", OBS, ACT))
    assert again.env_steps == 50 and again.next_seq == [50]


def test_torn_or_flipped_log_records_end_the_log(tmp_path):
    store = LearnerStateStore(tmp_path, OBS, ACT)
    store.start_segment()
    for i in range(5):
        store.log_transition(transition(i))
    store.sync()
    path = store.log.path
    store.close()
    data = path.read_bytes()
    record = len(data) // 5
    for cut in range(len(data) - record + 1, len(data)):  # every torn length of the last record
        path.write_bytes(data[:cut])
        payloads, valid, torn = read_segment(path)
        assert len(payloads) == 4 and valid == 4 * record and torn == cut - 4 * record
    for offset in random.Random(0).sample(range(len(data)), 40):  # a flipped byte anywhere
        damaged = bytearray(data)
        damaged[offset] ^= 0xA5
        path.write_bytes(bytes(damaged))
        payloads, _, _ = read_segment(path)
        assert len(payloads) == offset // record


def test_corrupt_checkpoint_at_any_byte_falls_back_to_the_previous(tmp_path):
    learner, store = make_learner(), LearnerStateStore(tmp_path / "good", OBS, ACT)
    store.start_segment()
    feed(learner, store, range(20))
    first = checkpoint(learner, store)
    feed(learner, store, range(20, 35))
    second = checkpoint(learner, store)
    feed(learner, store, range(35, 41))
    store.close()
    assert [p.name for p in LearnerStateStore(tmp_path / "good", OBS, ACT).checkpoints()] == [second.name, first.name]
    rng = random.Random(1)
    cases = 0
    for name in (MANIFEST_FILE, AGENT_FILE, REPLAY_FILE):
        size = (second / name).stat().st_size
        offsets = sorted(set([0, 1, 8, 63, 64, 65, size - 1] + rng.sample(range(size), 12)))
        for offset in offsets:
            for mode in ("flip", "truncate"):
                work = tmp_path / "work"
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(tmp_path / "good", work)
                target = work / second.name / name
                data = bytearray(target.read_bytes())
                if mode == "flip":
                    data[min(offset, size - 1)] ^= rng.randrange(1, 256)
                else:
                    del data[offset:]
                target.write_bytes(bytes(data))
                s = LearnerStateStore(work, OBS, ACT)
                with pytest.raises(LearnerStateError, match=name.split(".")[0]):
                    s.load_checkpoint(work / second.name)
                messages = []
                resumed = make_learner()
                report = resume_learner(resumed, s, log=lambda level, text: messages.append((level, text)))
                assert report.checkpoint.name == first.name, (name, offset, mode)
                assert any(level == "error" and second.name in text for level, text in messages)
                # The older checkpoint + the longer log tail give the same learner state.
                assert resumed.env_steps == 41 and len(resumed.replay) == 41 and resumed.next_seq == [41]
                assert resumed.policy_version == learner.policy_version
                assert (work / (second.name + ".corrupt")).is_dir()
                cases += 1
    assert cases >= 100


def test_validation_rejects_and_counts_bad_fields():
    learner = make_learner(num_sources=2)
    good = transition(0)

    def add(**changes):
        t = dict(source=good.source, seq=good.seq, episode=good.episode, state=good.state, action=good.action,
                 reward=good.reward, next_state=good.next_state, terminated=False, truncated=False, success=False,
                 step=good.step)
        t.update(changes)
        return learner.add_transition(**t)

    bad = {"bridge_id": dict(source=7), "state": dict(state=np.zeros(3)), "next_state": dict(next_state=[np.nan] * OBS),
           "action": dict(action=np.array([5.0, 0.0])), "reward": dict(reward=1e9)}
    for field, change in bad.items():
        with pytest.raises(TransitionRejected, match=f"^{field}"):
            add(**change)
    with pytest.raises(TransitionRejected, match="^reward"):
        add(reward=float("inf"))
    assert len(learner.replay) == 0
    add()
    add(seq=1, step=1)
    with pytest.raises(TransitionRejected, match="^seq"):
        add(seq=1, step=2)  # duplicate
    with pytest.raises(TransitionRejected, match="^step"):
        add(seq=2, step=1)  # step does not advance
    add(seq=2, episode=1, step=0)
    with pytest.raises(TransitionRejected, match="^episode"):
        add(seq=3, episode=0, step=3)  # goes back to an earlier episode
    add(seq=6, episode=1, step=1)  # gap of 3
    assert learner.seq_gaps == 3 and len(learner.replay) == 4
    add(seq=0, episode=0, step=0)  # a restarted bridge begins again
    assert learner.bridge_restarts == 1 and learner.next_seq[0] == 1 and len(learner.replay) == 5
    assert learner.rejected == {"bridge_id": 1, "state": 1, "next_state": 1, "action": 1, "reward": 2, "seq": 1,
                                "step": 1, "episode": 1}
    assert learner.summary()["rejected_transitions"] == 9


def test_learner_state_store_refuses_mismatched_sizes(tmp_path):
    learner, store = make_learner(), LearnerStateStore(tmp_path, OBS, ACT)
    store.start_segment()
    feed(learner, store, range(3))
    checkpoint(learner, store)
    store.close()
    other = LearnerStateStore(tmp_path, OBS + 1, ACT)
    with pytest.raises(LearnerStateError, match="obs_dim"):
        other.load_checkpoint(other.checkpoints()[0])
