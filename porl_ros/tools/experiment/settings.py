"""Everything a grid depends on: the grid's own settings plus the graph's settings classes.

`Experiment` bundles one instance of each class in EXPERIMENT_CLASSES. The learner,
exploration and episode settings start from what a profile's parameter files give the graph's
nodes (so a grid run is a run of that configuration), then take the command line's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from porl_ros import graph
from porl_ros.core.adaptive import AdaptiveConfig
from porl_ros.core.config import PorlConfig
from porl_ros.core.exploration import ExplorationConfig
from porl_ros.core.rollout import EpisodeSettings
from porl_ros.core.settings import NON_NEGATIVE, POSITIVE, Check, Settings, SettingError, field_names, setting
from porl_ros.tools.evaluate import RUN_EVAL_SEED
from porl_ros.tools.pretrain import PretrainSettings


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    pretrained: bool = True
    presample: bool = True  # False: T = 0
    epsilon: float | None = None  # None: the grid's presample_epsilon
    adaptive: bool = False
    learner: tuple[tuple[str, Any], ...] = ()  # PorlConfig fields this variant sets


# The fine-tuning remedies of PorlConfig and the values that turn each one off: `paper` turns
# them all off (PORL as published), `no_<name>` one at a time (the ablation of the defaults).
REMEDIES_OFF: dict[str, tuple[tuple[str, Any], ...]] = {
    "absorb": (("absorbing_success", False),),
    "mc": (("mc_lower_bound", False),),
    "trust": (("trust_region_weight", 0.0),),
    "qnorm": (("actor_q_normalise", False),),
    "cnorm": (("critic_obs_normalise", False),),
    "guard": (("regression_guard", False),),
}

# Off for a random actor too: most remedies anchor to or normalise by the pre-trained actor.
ALL_REMEDIES_OFF = tuple(item for off in REMEDIES_OFF.values() for item in off)

VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("porl", "porl_ros's PORL with its default remedies: BC actor, pre-sample T with epsilon-greedy "
                    "(actor frozen), then SAC"),
    Variant("paper", "PORL as published: the defaults without any fine-tuning remedy",
            learner=ALL_REMEDIES_OFF),
    Variant("t0", "BC actor, T = 0 (random critic, actor trained from step 1)", presample=False),
    Variant("eps0", "PORL with epsilon = 0 in pre-sample", epsilon=0.0),
    Variant("scratch", "SAC from scratch: random actor, T = 0, no remedies", pretrained=False, presample=False,
            learner=ALL_REMEDIES_OFF),
    Variant("adaptive", "PORL, pre-sample ends when the critic has converged", adaptive=True),
    *(Variant(f"no_{name}", f"the defaults without {', '.join(field for field, _ in off)}", learner=off)
      for name, off in REMEDIES_OFF.items()),
)}


@dataclass
class GridSettings(Settings):
    """The grid: which runs, how long, how they are evaluated."""

    profile: str = setting("cpu", "The graph's parameter-file profile the learner, exploration and episode "
                                  "settings start from.", Check(lambda v: v in graph.PROFILE_CONFIGS,
                                                                f"one of {sorted(graph.PROFILE_CONFIGS)}"))
    tasks: tuple[str, ...] = setting(("metaworld/push-v3", "metaworld/reach-v3"), "Env ids.",
                                     Check(lambda v: len(v) > 0, "non-empty"))
    seeds: tuple[int, ...] = setting((0, 1, 2), "Seeds (of the learner, the BC policy and the episodes).",
                                     Check(lambda v: len(v) > 0 and min(v) >= 0, "non-empty, each >= 0"))
    variants: tuple[str, ...] = setting(("porl", "paper", "t0", "eps0", "scratch"), "Variants to run.",
                                        Check(lambda v: len(v) > 0 and set(v) <= set(VARIANTS),
                                              f"non-empty, of {', '.join(VARIANTS)}"))
    total_steps: int | None = setting(None, "Env steps per run; none: the profile's learner total_env_steps.",
                                      POSITIVE)
    eval_every: int = setting(500, "Evaluate every N env steps.", POSITIVE)
    eval_episodes: int = setting(5, "Episodes per evaluation.", POSITIVE)
    eval_seed: int = setting(RUN_EVAL_SEED, "First evaluation seed of the run with seed 0; the run with seed s "
                                            "starts at eval_seed + s, as porl-ros run does.", NON_NEGATIVE)
    torch_threads: int = setting(1, "Torch threads per run (runs go in parallel with --jobs).", POSITIVE)


# The classes of an experiment, by attribute name of `Experiment`.
EXPERIMENT_CLASSES = {"grid": GridSettings, "learner": PorlConfig, "exploration": ExplorationConfig,
                      "episodes": EpisodeSettings, "adaptive": AdaptiveConfig, "pretrain": PretrainSettings}
# Fields each run sets itself (PorlConfig.seed is the run's grid seed): no command-line option.
PER_RUN = ("seed",)
# The graph node whose parameter-file section gives a class its profile values.
PROFILE_NODE = {PorlConfig: graph.LEARNER, ExplorationConfig: graph.CONTROLLER, EpisodeSettings: graph.SIM_BRIDGE}


def profile_defaults(profile: str) -> dict[str, Any]:
    """What the profile gives the experiment: the values its parameter files set for the learner's
    PorlConfig, the controller's ExplorationConfig and the sim bridge's EpisodeSettings, and the
    learner's total_env_steps as the steps per run."""
    from porl_ros.nodes.settings import profile_values, resolve
    values: dict[str, Any] = {}
    for cls, node in PROFILE_NODE.items():
        section = profile_values(node, profile)
        values.update({k: v for k, v in section.items() if k in field_names(cls)})
    values["total_steps"] = resolve(graph.LEARNER, profile)[1].total_env_steps
    return values


@dataclass
class Experiment:
    grid: GridSettings
    learner: PorlConfig
    exploration: ExplorationConfig
    episodes: EpisodeSettings
    adaptive: AdaptiveConfig
    pretrain: PretrainSettings

    @classmethod
    def build(cls, values: dict[str, Any]) -> "Experiment":
        """From flat field values over the profile's (`values["profile"]`, default cpu) and the defaults."""
        known = set(field_names(*EXPERIMENT_CLASSES.values()))
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingError(unknown[0], f"unknown experiment setting(s): {', '.join(unknown)}")
        profile = values.get("profile", GridSettings().profile)
        if profile not in graph.PROFILE_CONFIGS:
            GridSettings(profile=profile)  # raises, naming the field
        base = profile_defaults(profile)
        merged = {**base, **{k: v for k, v in values.items() if not (k == "total_steps" and v is None)}}
        experiment = cls(**{name: klass.pick(merged) for name, klass in EXPERIMENT_CLASSES.items()})
        experiment.check()
        return experiment

    def check(self) -> None:
        grid, adaptive = self.grid, self.adaptive
        if not 0 <= self.learner.presample_steps <= grid.total_steps:
            raise SettingError("presample_steps", f"presample_steps must be in [0, total_steps={grid.total_steps}]"
                                                  f", got {self.learner.presample_steps}")
        if "adaptive" in grid.variants and not adaptive.adaptive_min <= adaptive.adaptive_max <= grid.total_steps:
            raise SettingError("adaptive_max", "adaptive_min <= adaptive_max <= total_steps must hold, got "
                                               f"{adaptive.adaptive_min}, {adaptive.adaptive_max}, {grid.total_steps}")

    def to_dict(self) -> dict[str, Any]:
        """Flat field values (JSON; `build` takes them back)."""
        return {k: v for name in EXPERIMENT_CLASSES for k, v in getattr(self, name).to_dict().items()}

    def run_config(self, variant: Variant, seed: int) -> tuple[PorlConfig, ExplorationConfig]:
        """The learner and exploration settings of one run."""
        if variant.adaptive:
            presample = self.adaptive.adaptive_max  # the cap; the criterion ends it earlier
        else:
            presample = self.learner.presample_steps if variant.presample else 0
        config = PorlConfig(**{**self.learner.to_dict(), **dict(variant.learner), "presample_steps": presample,
                               "seed": seed})
        exploration = self.exploration
        if variant.epsilon is not None:
            exploration = ExplorationConfig(**{**exploration.to_dict(), "presample_epsilon": variant.epsilon,
                                               "presample_epsilon_end": None})
        return config, exploration

