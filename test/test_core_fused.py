"""The fused update block (fused.py) and the device replay copy (device_replay.py): the block does
what the reference path (one PorlAgent.update per batch) does, with the remedies on, in both
stages; the copy follows the host buffer; the CUDA graph path equals the uncaptured block (those
tests skip without a GPU)."""

import numpy as np
import pytest
import torch

from porl_ros.core import PorlAgent, PorlConfig, ReplayBuffer
from porl_ros.core.device_replay import DeviceReplay, sample_indices
from porl_ros.core.fused import WARMUP_BLOCKS, batch_index_seed
from porl_ros.core.learner import build_learner
from porl_ros.core.networks import SquashedGaussianActor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
OBS, ACT = 3, 2


def config(**kw) -> PorlConfig:
    base = dict(n_critics=4, n_target_critics=2, critic_hidden=(32, 32), actor_hidden=(16, 16), batch_size=16,
                utd_ratio=3, presample_steps=0, device="cpu", seed=7, actor_log_std_init=None)
    return PorlConfig(**(base | kw))


def pretrained_actor() -> SquashedGaussianActor:
    torch.manual_seed(11)
    return SquashedGaussianActor(OBS, ACT, (16, 16), -np.ones(ACT), np.ones(ACT), obs_mean=[0.1, -0.2, 0.3],
                                 obs_std=[1.5, 0.5, 2.0])


def add_steps(rb: ReplayBuffer, rng: np.random.Generator, n: int) -> None:
    """n transitions; the first half of them get an observed return (the rest stay -inf)."""
    inserts = [rb.add(rng.normal(size=OBS), rng.uniform(-1, 1, ACT), rng.normal(), rng.normal(size=OBS),
                      bool(rng.random() < 0.1)) for _ in range(n)]
    rb.set_mc_returns(inserts[: n // 2], rng.normal(size=n // 2))


def state(agent: PorlAgent) -> dict[str, torch.Tensor]:
    return {k: v for k, v in agent.state_tensors().items() if not k.startswith("rng.")}


SCENARIOS = {
    # stage, remedies, pre-trained actor or not
    "presample": dict(cfg=dict(presample_steps=100), pretrained=True),
    "finetune_scratch_actor_every_2": dict(cfg=dict(actor_update_every=2), pretrained=False),
    "finetune_all_remedies": dict(cfg=dict(trust_region_weight=0.4, trust_region_q_filter=True,
                                           actor_q_normalise=True, mc_lower_bound=True, critic_obs_normalise=True),
                                  pretrained=True),
    "finetune_no_layer_norm_plain_q": dict(cfg=dict(critic_layer_norm=False, actor_q_normalise=False,
                                                    trust_region_weight=1.0, n_target_critics=4),
                                           pretrained=True),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fused_block_does_what_the_reference_updates_do(name):
    """Same batches (the block's own device-drawn indices, replayed into agent.update) and the same
    generator: after several env steps (with transitions and observed returns arriving in between,
    past the ring's wrap) the losses, parameters, targets, optimizer states and counts agree."""
    scenario = SCENARIOS[name]
    make = lambda mode: PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT), config(fused_update=mode, **scenario["cfg"]),
                                  actor=pretrained_actor() if scenario["pretrained"] else None)
    fused, reference = make("eager"), make("off")
    assert fused.fused is not None and reference.fused is None
    cfg = fused.config
    rng = np.random.default_rng(0)
    rb = ReplayBuffer(120, OBS, ACT)
    add_steps(rb, rng, 80)
    twin = torch.Generator().manual_seed(batch_index_seed(cfg.seed))
    actor_before = {k: v.clone() for k, v in fused.actor.state_dict().items()}
    for step in range(6):
        out = fused.train_after_env_step(rb)
        indices = sample_indices(twin, torch.tensor(len(rb)), cfg.utd_ratio, cfg.batch_size)
        metrics = [reference.update(rb.batch_from_rows(torch.from_numpy(rb.rows(i.numpy())))) for i in indices]
        assert out["updates"] == cfg.utd_ratio
        for key in metrics[0].keys() | metrics[-1].keys():
            values = [m[key] for m in metrics if key in m]
            assert out[key] == pytest.approx(np.mean(values), rel=1e-5, abs=1e-6), (step, key)
        assert out.keys() - {"updates"} == {k for m in metrics for k in m}
        add_steps(rb, rng, 15)  # the copy must pick these (and their returns) up; wraps at step 3
    assert (fused.critic_updates, fused.actor_updates) == (reference.critic_updates, reference.actor_updates)
    expected = state(reference)
    for key, value in state(fused).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
    actor_same = all(torch.equal(v, actor_before[k]) for k, v in fused.actor.state_dict().items())
    assert actor_same == (fused.phase == "presample")  # frozen bit for bit in presample, learning after
    if fused.phase == "finetune":
        every = cfg.actor_update_every
        assert fused.actor_updates == 6 * cfg.utd_ratio // every > 0


def test_fused_run_is_reproducible_and_resumes_exactly():
    from safetensors.torch import load, save
    rng = np.random.default_rng(1)
    rb = ReplayBuffer(200, OBS, ACT)
    add_steps(rb, rng, 100)
    a = PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT), config(fused_update="eager"))
    first = [a.train_after_env_step(rb) for _ in range(3)]
    again = PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT), config(fused_update="eager"))
    assert [again.train_after_env_step(rb) for _ in range(3)] == first  # bit for bit on CPU
    b = PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT), config(fused_update="eager", seed=99))
    b.load_state_tensors(load(save(a.state_tensors())))  # the batch-index generator travels too
    for _ in range(3):
        assert a.train_after_env_step(rb) == b.train_after_env_step(rb)


def test_learner_with_the_fused_block_keeps_the_update_budget(tmp_path):
    actor = SquashedGaussianActor(OBS, ACT, (8,), -np.ones(ACT), np.ones(ACT))
    learner = build_learner(actor, config(fused_update="eager", batch_size=4, learning_starts=3, utd_ratio=2,
                                          presample_utd_ratio=3, presample_steps=6), replay_capacity=100)
    rng = np.random.default_rng(0)
    for step in range(10):
        learner.add_transition(0, step, 0, rng.normal(size=OBS), rng.uniform(-1, 1, ACT), 1.0, rng.normal(size=OBS),
                               False, False, False)
        metrics = learner.train()
        assert learner.agent.critic_updates == learner.updates_owed(), step
        assert ("actor_loss" in metrics) == (learner.env_steps >= 6), step  # 6: the switch
    assert learner.agent.actor_updates == 2 * 5
    mirror = learner.agent.fused.mirror
    learner.replay.save(tmp_path / "replay.safetensors")
    learner.replay = ReplayBuffer.load(tmp_path / "replay.safetensors")  # what a resume does
    learner.add_transition(0, 10, 0, rng.normal(size=OBS), rng.uniform(-1, 1, ACT), 1.0, rng.normal(size=OBS),
                           False, False, False)
    learner.train()
    assert learner.agent.critic_updates == learner.updates_owed()
    assert learner.agent.fused.mirror is mirror and mirror.replay is learner.replay and int(mirror.size) == 11


# ----------------------------------------------------------------- device replay copy
def test_device_copy_follows_appends_returns_the_ring_and_a_new_buffer(tmp_path):
    rng = np.random.default_rng(2)
    rb = ReplayBuffer(50, OBS, ACT)
    add_steps(rb, rng, 20)
    mirror = DeviceReplay(rb, "cpu")
    for n in (0, 7, 40, 3, 120):  # 40 and 120 wrap the ring (the latter more than once)
        add_steps(rb, rng, n)
        mirror.sync()
        assert int(mirror.size) == len(rb)
        assert torch.equal(mirror.storage, torch.from_numpy(rb.rows(np.arange(rb.capacity))))
    rb.set_mc_returns([rb.added - 1], [42.0])
    mirror.sync()
    assert mirror.storage[(rb.added - 1) % rb.capacity, -1] == 42.0
    rb.save(tmp_path / "r.safetensors")
    other = ReplayBuffer.load(tmp_path / "r.safetensors")
    add_steps(other, rng, 5)
    storage = mirror.storage
    mirror.bind(other)  # a resumed learner's buffer: same storage tensor, all rows copied
    mirror.sync()
    assert mirror.storage is storage and torch.equal(storage, torch.from_numpy(other.rows(np.arange(50))))
    add_steps(rb, rng, 5)  # the old buffer is no longer followed
    assert not mirror._pending
    with pytest.raises(ValueError, match="capacity"):
        mirror.bind(ReplayBuffer(51, OBS, ACT))


def test_sampled_indices_cover_the_live_rows_and_only_them():
    gen = torch.Generator().manual_seed(0)
    for size in (1, 7, 1000):
        idx = sample_indices(gen, torch.tensor(size), 4, 2000)
        assert idx.shape == (4, 2000) and idx.dtype == torch.int64
        assert int(idx.min()) >= 0 and int(idx.max()) < size
        if size <= 7:
            counts = torch.bincount(idx.flatten(), minlength=size).double()
            assert torch.all((counts - 8000 / size).abs() < 6 * (8000 / size) ** 0.5)  # uniform


def test_fused_update_setting_is_validated():
    with pytest.raises(ValueError, match="fused_update"):
        PorlConfig(fused_update="fast")
    with pytest.raises(ValueError, match="fused_update"):
        PorlConfig(fused_update="graph", device="cpu")
    assert PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT), config(fused_update="auto", device="cpu")).fused is None
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fused_update 'graph' needs a CUDA device"):
            PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT), config(fused_update="graph", device="auto"))


# ----------------------------------------------------------------- CUDA graphs
@CUDA
def test_captured_graph_equals_the_uncaptured_block_on_cuda():
    """Both stages, the switch, a restored actor (new optimizer: recapture): same updates either way."""
    make = lambda mode: PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT),
                                  config(fused_update=mode, device="cuda", presample_steps=5, trust_region_q_filter=True),
                                  actor=pretrained_actor())
    graph, eager = make("graph"), make("eager")
    assert graph.fused.capture and isinstance(graph.critic_opt, torch.optim.Adam)
    assert graph.critic_opt.defaults["fused"] and graph.critic_opt.defaults["capturable"]
    rng = np.random.default_rng(3)
    rb = ReplayBuffer(500, OBS, ACT)
    add_steps(rb, rng, 100)
    for step in range(3 * (WARMUP_BLOCKS + 3)):
        if step == WARMUP_BLOCKS + 3:
            for agent in (graph, eager):
                agent.set_phase("finetune")
        if step == 2 * (WARMUP_BLOCKS + 3):
            for agent in (graph, eager):
                agent.restore_best_actor(0.5)
        out_g, out_e = graph.train_after_env_step(rb), eager.train_after_env_step(rb)
        assert out_g.keys() == out_e.keys()
        for key in out_e:
            assert out_g[key] == pytest.approx(out_e[key], rel=1e-4, abs=1e-5), (step, key)
        add_steps(rb, rng, 4)
    assert graph.fused.captures == 3  # presample, finetune, finetune again after the restore
    assert (graph.critic_updates, graph.actor_updates) == (eager.critic_updates, eager.actor_updates)
    expected = state(eager)
    for key, value in state(graph).items():
        torch.testing.assert_close(value, expected[key], rtol=1e-4, atol=1e-5, msg=key)


def test_the_block_never_reads_a_tensor_back_to_the_host(monkeypatch):
    """What capture needs: nothing in the block turns a tensor into a Python value (item, tolist,
    bool, int, float, numpy), so no branch depends on one. The optimizers are swapped for fused
    Adam, whose step count stays a tensor (as on CUDA; plain CPU Adam reads it with .item())."""
    agent = PorlAgent(OBS, ACT, -np.ones(ACT), np.ones(ACT),
                      config(fused_update="eager", trust_region_q_filter=True, actor_update_every=2),
                      actor=pretrained_actor())
    agent.critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=3e-4, fused=True)
    agent.actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=1e-4, fused=True)
    agent.alpha_opt = torch.optim.Adam([agent.log_alpha], lr=3e-4, fused=True)
    rb = ReplayBuffer(100, OBS, ACT)
    add_steps(rb, np.random.default_rng(4), 60)
    agent.train_after_env_step(rb)  # binds the device copy
    before = agent.critic.head.weight.detach().clone()

    def host_read(*args, **kwargs):
        raise AssertionError("host read of a tensor inside the update block")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    agent.fused._block((False, True, False, True))
    monkeypatch.undo()
    assert not torch.equal(agent.critic.head.weight, before)
    with pytest.raises(AssertionError, match="host read"):  # the guard itself works
        monkeypatch.setattr(torch.Tensor, "item", host_read)
        torch.ones(()).item()
