"""Evaluation of the fine-tuned actor while it learns, off the control loop.

The learner saves its actor every `snapshot_every_env_steps` env steps into
`<learner run dir>/snapshots/step_<N>/` (an ordinary checksummed actor checkpoint).
`SnapshotEvaluator`, started by `porl-ros run`, evaluates each snapshot in order in its own
simulator instance on a thread of the runner process: deterministic actions, the same
seeded episodes as the before/after evaluations, so every point of the curve faces the
same task variations. Results are appended to `<run dir>/evaluations.jsonl` as they come
(one JSON object per snapshot: env_steps, success_rate, mean_return, std_return,
policy_version), so a run that stops early still has them, and a resumed run skips the
snapshots already evaluated.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Callable, Optional

SNAPSHOT_DIR = "snapshots"
EVALUATIONS_FILE = "evaluations.jsonl"
_SNAPSHOT_RE = re.compile(r"^step_(\d+)$")


def snapshot_name(env_steps: int) -> str:
    return f"step_{env_steps:08d}"


def snapshot_steps(path: Path) -> Optional[int]:
    """The env-step count of a snapshot directory (None: not a snapshot)."""
    match = _SNAPSHOT_RE.match(path.name)
    return int(match.group(1)) if match else None


def read_evaluations(path: Path) -> list[dict]:
    """The evaluations written so far, ordered by env_steps (a torn last line is skipped)."""
    rows: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                rows[int(row["env_steps"])] = row
            except (ValueError, KeyError, TypeError):
                continue
    return [rows[k] for k in sorted(rows)]


class SnapshotEvaluator:
    """Evaluates the learner's actor snapshots as they appear, on a background thread."""

    def __init__(self, snapshot_dir: Path, results_file: Path, env_id: str, episodes: int, episode_steps: int,
                 seed: int, say: Callable[[str], None] = print, poll_s: float = 0.5) -> None:
        self.snapshot_dir, self.results_file = Path(snapshot_dir), Path(results_file)
        self.env_id, self.episodes, self.episode_steps, self.seed = env_id, episodes, episode_steps, seed
        self.say, self.poll_s = say, poll_s
        self.results = read_evaluations(self.results_file)
        self._done = {row["env_steps"] for row in self.results}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="porl-evaluator", daemon=True)
        self.error: Optional[str] = None

    def start(self) -> "SnapshotEvaluator":
        self._thread.start()
        return self

    def pending(self) -> list[tuple[int, Path]]:
        """Snapshots written completely and not evaluated yet, oldest first."""
        if not self.snapshot_dir.is_dir():
            return []
        found = []
        for path in self.snapshot_dir.iterdir():
            steps = snapshot_steps(path)
            # save_actor writes meta.json last: its presence means the snapshot is complete.
            if steps is not None and steps not in self._done and (path / "meta.json").is_file():
                found.append((steps, path))
        return sorted(found)

    def evaluate(self, env, steps: int, path: Path) -> dict:
        from porl_ros.core.checkpoint import load_actor
        from porl_ros.tools.evaluate import actor_policy, evaluate_policy

        actor, meta = load_actor(path, expect={"obs_dim": env.spec.obs_dim, "act_dim": env.spec.act_dim})
        result = evaluate_policy(env, actor_policy(actor, deterministic=True), self.episodes, seed=self.seed)
        row = {"env_steps": steps, "success_rate": result.success_rate, "mean_return": result.mean_return,
               "std_return": result.std_return, "policy_version": meta.policy_version, "episodes": self.episodes}
        with self.results_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self.results.append(row)
        self._done.add(steps)
        return row

    def _run(self) -> None:
        import torch

        from porl_ros.envs.registry import make_env
        torch.set_num_threads(1)  # the graph's nodes need the cores more than this thread does
        env = make_env(self.env_id, max_episode_steps=self.episode_steps)
        try:
            while True:
                todo = self.pending()
                for steps, path in todo:
                    row = self.evaluate(env, steps, path)
                    self.say(f"[porl] evaluation at {steps} env steps: success {row['success_rate']:.2f}, "
                             f"return {row['mean_return']:.1f} ({self.episodes} episodes, policy "
                             f"v{row['policy_version']})")
                if not todo:
                    if self._stop.is_set():
                        return
                    time.sleep(self.poll_s)
        except Exception as e:  # noqa: BLE001 -- an evaluation problem must never stop the run
            self.error = f"{type(e).__name__}: {e}"
            self.say(f"[porl] evaluations stopped: {self.error}")
        finally:
            env.close()

    def finish(self, timeout_s: float = 600.0) -> list[dict]:
        """Evaluate what is still pending, then stop; returns every evaluation, by env_steps."""
        self._stop.set()
        self._thread.join(timeout_s)
        return sorted(self.results, key=lambda row: row["env_steps"])
