"""`porl-ros experiment`: reproduce PORL's claims on the embedded tasks, a grid of variants x
tasks x seeds.

    porl-ros experiment --tasks metaworld/push-v3 metaworld/reach-v3 --seeds 0 1 2 --out runs/experiment

Every run is the graph's fine-tuning loop in one process, without ROS, so a grid fits on a
small CPU: each env step is `porl_ros.core.rollout.fine_tuning_step` (the controller's
`ActionChooser`, the sim bridge's `EnvStepper`, the learner's `PorlLearner`), with the
graph's settings: PorlConfig, ExplorationConfig and EpisodeSettings default to what the
chosen profile's parameter files give the nodes (`--profile cpu`, as `make run`).

Variants (`--variants`; settings.VARIANTS):
  porl      pre-trained (BC) actor, pre-sample T steps with epsilon-greedy, actor frozen, then SAC,
            with porl_ros's default fine-tuning remedies (PorlConfig);
  paper     the same without any remedy: PORL as published;
  no_<r>    the defaults without one remedy r (mc, trust, qnorm, cnorm, guard): the ablation;
  t0        pre-trained actor, T = 0: a random critic meets the actor at once;
  eps0      PORL with epsilon = 0 in pre-sample (the frozen policy's own actions only);
  scratch   SAC from scratch: a random actor, T = 0;
  adaptive  PORL whose pre-sample stage ends when the critic has converged
            (porl_ros.core.adaptive), between a minimum and a cap.

Every `--eval-every` env steps (and at step 0) the actor is evaluated deterministically on
`--eval-episodes` seeded episodes (the same for every variant): one CSV row. BC policies are
cached in OUT/bc/<task>_s<seed>/, so every variant of a seed starts from the same actor.

Outputs in `--out`: results.csv (one row per evaluation), runs/*.csv|log (per run; a finished
run is skipped when the grid is restarted), curves.png, table.md and settings.json.

Modules: settings (what a grid depends on), single_run (one run), grid (the runs and their
CSV files), render (results.csv, curves, table), cli (the command, options derived from the
settings classes).
"""

from .cli import main

__all__ = ["main"]
