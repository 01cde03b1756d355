"""FusedUpdater: the block of updates owed for one env step as device work with no host sync inside.

PorlAgent.train_after_env_step's reference path samples each batch on the host (numpy) and
reads each update's statistics back (.tolist()): on a GPU that is a Python round trip per
kernel, and the learner runs at kernel-launch speed. The fused block does exactly the same
updates, with the agent's own code (critic_step, actor_and_alpha_step), but

  - batches come from a device copy of the replay (DeviceReplay), their indices drawn for
    the whole block at once from a seeded generator on the device;
  - which of the K critic updates are followed by an actor update is worked out on the host
    from the update counter before the block starts (the "plan"), so nothing inside branches
    on a tensor value;
  - statistics are summed on the device into one static tensor, read once after the block;
  - the agent's optimizers are fused, capturable Adam on CUDA (PorlAgent makes them so).

Modes (PorlConfig.fused_update): 'eager' runs the block as it is (any device; the CPU tests
check it against the reference path); 'graph' (CUDA) runs each new plan eagerly on a side
stream for WARMUP_BLOCKS env steps (real updates, which are also the warm-up PyTorch asks
for before capture), then captures it once as a CUDA graph and from then on replays it: the
UTD critic updates, the Polyak steps and the actor and temperature updates in one launch.
The update counters advance on the host by the plan's counts, so they stay exact.
A captured graph holds the addresses of the parameters, optimizer states, replay storage and
generators: anything that replaces one of them (a restored actor's new optimizer, a loaded
state) must call invalidate(); the agent does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from .device_replay import DeviceReplay
from .replay import ReplayBuffer

if TYPE_CHECKING:
    from .agent import PorlAgent

UPDATE_MODES = ("auto", "off", "eager", "graph")
# 'auto' stays on the reference path on every device until the captured block has run on a GPU
# (test/test_core_fused.py's CUDA test and benchmarks/bench_learner.py): no GPU was lent so far.
AUTO_MODE = "off"
WARMUP_BLOCKS = 2  # eager runs of a plan (on a side stream) before it is captured


def resolve_update_mode(mode: str, device: torch.device) -> str:
    """'auto' -> 'off' (see AUTO_MODE); refuses 'graph' without CUDA (naming the setting)."""
    if mode not in UPDATE_MODES:
        raise ValueError(f"fused_update must be one of {list(UPDATE_MODES)}, got {mode!r}")
    if mode == "auto":
        return AUTO_MODE
    if mode == "graph" and device.type != "cuda":
        raise ValueError(f"fused_update 'graph' needs a CUDA device, but the learner runs on {device}; "
                         f"use 'eager' (the same block, uncaptured) or 'off'")
    return mode


def batch_index_seed(seed: int) -> int:
    """Seed of the batch-index generator: derived from the run's seed, independent of the agent's
    own generator (same seed, same device: their streams would coincide)."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, dtype=np.uint32)[0])


class FusedUpdater:
    """Runs PorlAgent's update blocks fused (and, with capture, as replayed CUDA graphs)."""

    def __init__(self, agent: "PorlAgent", capture: bool, autocast_dtype: Optional[torch.dtype] = None) -> None:
        if capture and agent.device.type != "cuda":
            raise ValueError(f"CUDA graph capture needs a CUDA device, the agent is on {agent.device}")
        self.agent, self.capture, self.autocast_dtype = agent, capture, autocast_dtype
        self.device = agent.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(batch_index_seed(agent.config.seed))
        self.mirror: Optional[DeviceReplay] = None
        n_stats = len(agent.CRITIC_STATS) + len(agent.ACTOR_STATS)
        self._sums = torch.zeros(n_stats, device=self.device)  # the block's one output
        self._graphs: dict[tuple[bool, ...], torch.cuda.CUDAGraph] = {}
        self._eager_runs: dict[tuple[bool, ...], int] = {}
        self._bound_to: tuple = ()
        self._side_stream: Optional[torch.cuda.Stream] = None  # warm-up and capture run on it
        self.captures = 0  # graphs captured so far (for tests and the benchmark)

    def invalidate(self) -> None:
        """Forget captured graphs: the next blocks warm up and capture again."""
        self._graphs.clear()
        self._eager_runs.clear()

    # ------------------------------------------------------------------ one env step
    def run(self, replay: ReplayBuffer, updates: int) -> dict[str, float]:
        """`updates` critic updates (and the actor updates due among them) on batches from `replay`;
        returns the mean of each statistic, like PorlAgent.train_after_env_step."""
        agent = self.agent
        self._follow(replay)
        self.mirror.sync()
        plan = tuple(agent.actor_due(agent.critic_updates + i) for i in range(1, updates + 1))
        if self.capture:
            self._run_captured(plan)
        else:
            self._block(plan)
        actor_updates = sum(plan)
        agent.critic_updates += updates
        agent.actor_updates += actor_updates
        sums = self._sums.tolist()  # the block's one host sync
        n_critic = len(agent.CRITIC_STATS)
        out = {name: sums[i] / updates for i, name in enumerate(agent.CRITIC_STATS)}
        if actor_updates:
            out.update({name: sums[n_critic + i] / actor_updates for i, name in enumerate(agent.ACTOR_STATS)})
        out["updates"] = float(updates)
        return out

    def _follow(self, replay: ReplayBuffer) -> None:
        """Mirror `replay` (a resumed learner brings a new buffer); graphs that read another
        storage tensor, or another agent's modules or optimizers, are dropped."""
        if self.mirror is None or not self.mirror.fits(replay):
            if self.mirror is not None:
                self.mirror.unbind()
            self.mirror = DeviceReplay(replay, self.device)
        elif self.mirror.replay is not replay:
            self.mirror.bind(replay)
        agent = self.agent
        bound_to = (self.mirror, agent.critic, agent.critic_target, agent.actor, agent.reference,
                    agent.critic_opt, agent.actor_opt, agent.alpha_opt)
        if len(bound_to) != len(self._bound_to) or any(a is not b for a, b in zip(bound_to, self._bound_to)):
            self.invalidate()
            self._bound_to = bound_to

    # ------------------------------------------------------------------ the block
    def _block(self, plan: tuple[bool, ...]) -> None:
        """The updates of `plan` (True: that critic update is followed by an actor update), as
        tensor code only; the statistics' sums land in self._sums."""
        agent = self.agent
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None,
                            cache_enabled=False):  # graph capture needs the autocast cache off
            indices = self.mirror.sample(self.generator, len(plan), agent.config.batch_size)
            critic_sum = torch.zeros(len(agent.CRITIC_STATS), device=self.device)
            actor_sum = torch.zeros(len(agent.ACTOR_STATS), device=self.device)
            for k, actor_due in enumerate(plan):
                batch = self.mirror.gather(indices[k])
                critic_sum = critic_sum + torch.stack(agent.critic_step(batch)).float()
                if actor_due:
                    actor_sum = actor_sum + torch.stack(agent.actor_and_alpha_step(batch.obs)).float()
            self._sums.copy_(torch.cat([critic_sum, actor_sum]))

    def _run_captured(self, plan: tuple[bool, ...]) -> None:
        graph = self._graphs.get(plan)
        if graph is not None:
            graph.replay()
            return
        current = torch.cuda.current_stream(self.device)
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(self.device)
        side = self._side_stream
        side.wait_stream(current)
        runs = self._eager_runs.get(plan, 0)
        if runs < WARMUP_BLOCKS:
            with torch.cuda.stream(side):
                self._block(plan)  # this env step's real updates, and a warm-up for the capture
            current.wait_stream(side)
            self._eager_runs[plan] = runs + 1
            return
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.agent.torch_gen)
        graph.register_generator_state(self.generator)
        try:
            # thread_local: another thread of the node (weights to CPU, say) may use CUDA meanwhile.
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                self._block(plan)  # recorded, not run
        except RuntimeError as e:
            raise RuntimeError(f"CUDA graph capture of the update block failed: {e}. Set fused_update to "
                               f"'eager' to run the same block uncaptured.") from e
        current.wait_stream(side)
        self._graphs[plan] = graph
        self.captures += 1
        graph.replay()  # this env step's updates
