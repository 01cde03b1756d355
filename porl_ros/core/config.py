"""PORL's learning hyper-parameters: one validated settings class, the only home of their defaults.

The learner node declares one ROS parameter per field, `porl-ros experiment` one option per
field, and docs/parameters.md one row per field, all derived from the declarations below:
adding a field here is the whole change. A bad value is refused at start with the field's name.
The defaults are the paper's sizes (10 critics, UTD 16, batch 256) with the fixes the
experiment grid settled on (docs/results.md): rewards x0.1, the pre-trained actor's log-std
reset to -1, actor lr 1e-4, initial temperature 0.01. config/profile_cpu.yaml shrinks the sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .fused import UPDATE_MODES
from .settings import (AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, POSITIVE_SIZES, Check, Settings, SettingError, one_of,
                       setting, within)

DEVICE = Check(lambda v: re.match(r"^(auto|cpu|cuda|cuda:\d+)$", v) is not None, "'auto', 'cpu', 'cuda' or 'cuda:N'")


@dataclass
class PorlConfig(Settings):
    """Algorithm hyper-parameters of the learner (PorlAgent and PorlLearner)."""

    # Critic ensemble.
    n_critics: int = setting(10, "Critic ensemble size.", AT_LEAST_ONE)
    n_target_critics: int = setting(2, "TD target = min over this many randomly chosen target critics "
                                       "(<= n_critics).", AT_LEAST_ONE)
    critic_layer_norm: bool = setting(True, "LayerNorm in the critics.")
    critic_hidden: tuple[int, ...] = setting((256, 256), "Hidden layer sizes of each critic.", POSITIVE_SIZES)
    # Actor.
    actor_hidden: tuple[int, ...] = setting((256, 256), "Hidden layer sizes of an actor created here (SAC from "
                                                        "scratch, BC in the experiment).", POSITIVE_SIZES)
    actor_log_std_min: float = setting(-5.0, "Lower bound of the actor's log-std.")
    actor_log_std_max: float = setting(2.0, "Upper bound of the actor's log-std (> actor_log_std_min).")
    actor_log_std_init: Optional[float] = setting(
        -1.0, "Reset a pre-trained actor's log-std to this constant before fine-tuning (a BC actor's is about 0, "
              "so its samples are nearly random); none keeps the checkpoint's.")
    # Optimisation.
    actor_lr: float = setting(1e-4, "Adam learning rate of the actor.", POSITIVE)
    critic_lr: float = setting(3e-4, "Adam learning rate of the critics.", POSITIVE)
    alpha_lr: float = setting(3e-4, "Adam learning rate of the entropy temperature.", POSITIVE)
    init_alpha: float = setting(0.01, "Initial entropy temperature.", POSITIVE)
    target_entropy: Optional[float] = setting(None, "Target entropy of the temperature tuning; none: -act_dim.")
    batch_size: int = setting(256, "Minibatch size.", AT_LEAST_ONE)
    gamma: float = setting(0.99, "Discount.", within(0.0, 1.0, high_open=True))
    tau: float = setting(0.005, "Polyak rate of the target critics.", within(0.0, 1.0, low_open=True))
    reward_scale: float = setting(0.1, "Rewards are multiplied by this before they are stored (Meta-World pays "
                                       "0..10 per step; Q near 1000 is slow to reach).", POSITIVE)
    utd_ratio: int = setting(16, "Critic updates per env step (lockstep: exactly; free_running: at most).",
                             AT_LEAST_ONE)
    presample_utd_ratio: Optional[int] = setting(None, "Critic updates per env step in the pre-sample stage, "
                                                       "where the actor is frozen; none: utd_ratio.", AT_LEAST_ONE)
    actor_update_every: int = setting(1, "Actor and temperature update every K critic updates (fine-tune).",
                                      AT_LEAST_ONE)
    learning_starts: Optional[int] = setting(None, "Replay size before updates start; none: batch_size.",
                                             AT_LEAST_ONE)
    # Fine-tuning remedies (PorlAgent's docstring; docs/results.md has the ablation behind each default).
    absorbing_success: bool = setting(True, "A step that ends the episode by success is valued as staying in the "
                                            "solved state, paid its reward forever (r / (1 - gamma)), not as the "
                                            "end of all reward: with dense rewards (Meta-World pays up to 10 per "
                                            "step) a success that ends the episode is otherwise worth less than "
                                            "hovering just short of it.")
    mc_lower_bound: bool = setting(True, "Floor the TD target at the discounted return the episode actually "
                                          "collected from the transition on (Cal-QL-style anchoring of a fresh "
                                          "critic; a true lower bound when rewards are >= 0).")
    n_step: int = setting(1, "TD targets over this many steps of the transition's own episode: the "
                             "discounted rewards actually collected, then the bootstrap (uncorrected, as "
                             "in D4PG / DrQ-v2); a chain ends early where the episode ends or its next "
                             "row is missing. 1: the one-step target.", within(1, 50))
    mc_target_mix: float = setting(0.0, "Blend the TD target with the discounted return the episode actually "
                                        "collected from the transition on, where it is known: y = (1 - mix) "
                                        "y_TD + mix R_MC (a lambda-return-like target that needs no critic to "
                                        "rank actions; on-policy for the behaviour that collected it); 0: none.",
                                   within(0.0, 1.0))
    trust_region_weight: float = setting(0.4, "Weight of the squared distance (normalised actions) between the "
                                              "actor's mean action and the frozen pre-trained one in the actor "
                                              "loss; 0: none (the paper's SAC). Ignored for SAC from scratch (no "
                                              "pre-trained actor).", NON_NEGATIVE)
    trust_region_q_filter: bool = setting(False, "Apply the trust region only where the critic rates the "
                                                 "pre-trained action above the actor's own.")
    actor_q_normalise: bool = setting(True, "Divide the actor's Q term by the batch mean |Q| (TD3+BC), so the "
                                             "trust-region weight means the same at any reward scale.")
    actor_q_pessimism: float = setting(0.0, "The actor maximises the ensemble's mean Q minus this many ensemble "
                                            "standard deviations (a lower confidence bound): where the critics "
                                            "disagree, an action's value is an extrapolation the actor should not "
                                            "chase; 0: the mean (SAC/REDQ).", NON_NEGATIVE)
    policy_average: float = setting(0.0, "The policy that acts, is published and evaluated is an exponential "
                                         "moving average of the trained actor's weights, moved this fraction "
                                         "toward it after each actor update (Polyak averaging of iterates: the "
                                         "trained actor's step-to-step churn averages out); 0: the trained "
                                         "actor itself.", within(0.0, 1.0))
    critic_obs_normalise: bool = setting(True, "The critics see observations normalised (and clipped to +-10) "
                                                "with the pre-trained actor's statistics, as the actor does.")
    # Regression guard (porl_ros/core/guard.py).
    regression_guard: bool = setting(True, "Judge fine-tuning on windows of guard_window episodes against the "
                                           "frozen policy's pre-sample episodes; a window that falls behind by a "
                                           "margin restores the best actor so far and lowers the actor lr.")
    guard_window: int = setting(10, "Fine-tuning episodes per regression-guard window.", AT_LEAST_ONE)
    guard_success_margin: float = setting(0.2, "Restore when a window's success rate is this far below the "
                                               "pre-sample baseline's.", within(0.0, 1.0))
    guard_return_margin: float = setting(0.5, "... or when its mean episode return is below the baseline's by "
                                              "this fraction of |baseline return| (wide: fine-tuning explores "
                                              "differently from pre-sample, so returns differ without a regression).",
                                         NON_NEGATIVE)
    guard_lr_backoff: float = setting(0.5, "Each restore multiplies the actor learning rate by this.",
                                      within(0.0, 1.0, low_open=True))
    # PORL stages.
    presample_steps: int = setting(5000, "T: env steps of the pre-sample stage (actor frozen); 0: fine-tune "
                                         "from the start.", NON_NEGATIVE)
    # Runtime.
    device: str = setting("auto", "Torch device of the learner: 'auto' (CUDA when available), 'cpu', 'cuda' "
                                  "or 'cuda:N'.", DEVICE)
    fused_update: str = setting("auto", "How the updates owed for an env step (lockstep) run. 'off': one at a "
                                        "time, batches sampled on the host (the reference path; bit-reproducible "
                                        "on CPU). 'eager': as one fused block, replay copy and batch sampling on "
                                        "the device, no host sync inside (same updates, another batch-index "
                                        "stream). 'graph': that block captured once as a CUDA graph and replayed "
                                        "(CUDA only; not yet run on a GPU). 'auto': 'off' until it has been.",
                                one_of(*UPDATE_MODES))
    seed: int = setting(0, "Seed of network initialisation, batches and action noise in updates.", NON_NEGATIVE)

    def check(self) -> None:
        if self.n_target_critics > self.n_critics:
            raise SettingError("n_target_critics", f"n_target_critics must be in 1..n_critics={self.n_critics}, "
                                                   f"got {self.n_target_critics}")
        if self.actor_q_pessimism > 0 and self.n_critics < 2:
            raise SettingError("actor_q_pessimism", "actor_q_pessimism needs an ensemble (n_critics >= 2) to "
                                                    f"measure disagreement, got n_critics={self.n_critics}")
        if not self.actor_log_std_min < self.actor_log_std_max:
            raise SettingError("actor_log_std_min", f"actor_log_std_min must be < actor_log_std_max, got "
                                                    f"{self.actor_log_std_min} and {self.actor_log_std_max}")
        if self.fused_update == "graph" and self.device == "cpu":
            raise SettingError("fused_update", "fused_update 'graph' (CUDA graph capture) needs a CUDA device, "
                                               "but device is 'cpu'; use 'eager' or 'off'")
        if self.n_step > 1 and self.fused_update in ("eager", "graph"):
            raise SettingError("n_step", f"n_step {self.n_step} runs on the one-update-at-a-time path only: "
                                         f"set fused_update to 'off' (or n_step to 1), got '{self.fused_update}'")
        init = self.actor_log_std_init
        if init is not None and not self.actor_log_std_min < init < self.actor_log_std_max:
            raise SettingError("actor_log_std_init", f"actor_log_std_init must be inside (actor_log_std_min, "
                                                     f"actor_log_std_max), got {init}")

    @property
    def effective_learning_starts(self) -> int:
        """Replay size at which updates begin (default: one full batch)."""
        return self.batch_size if self.learning_starts is None else self.learning_starts

    def utd_ratio_in(self, phase_is_presample: bool) -> int:
        """Critic updates owed per env step in a phase."""
        if phase_is_presample and self.presample_utd_ratio is not None:
            return self.presample_utd_ratio
        return self.utd_ratio
