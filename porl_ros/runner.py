"""`porl-ros run`: the main job. Pre-trains a BC policy if none is given, evaluates it,
fine-tunes it with PORL through the ROS 2 graph (separate OS processes by default, one
process as an option), shows progress, evaluates the result and prints both, and leaves
a report (report.png learning curves + report.json) in the run directory.

The nodes, their executables and parameter files come from porl_ros.graph, the same
description the ROS 2 launch file uses.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from porl_ros import graph

BAG_DIR = "bag"  # <run dir>/bag: the run's recording


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="porl-ros run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    for arg in graph.RUN_ARGUMENTS:  # the same arguments as the launch file
        if not arg.runner_option:
            continue
        option = "--" + arg.name.replace("_", "-")
        if arg.type is bool and arg.default is None:  # --name / --no-name; neither: the graph decides
            p.add_argument(option, action=argparse.BooleanOptionalAction, default=None, help=arg.help)
        elif arg.type is bool:
            p.add_argument(option, action="store_true", help=arg.help)
        elif arg.name == "foxglove":  # --foxglove alone: the default port
            p.add_argument(option, type=int, nargs="?", const=graph.DEFAULT_FOXGLOVE_PORT, default=None,
                           metavar="PORT", help=arg.help)
        else:
            p.add_argument(option, type=arg.type, default=arg.default, choices=arg.choices or None, help=arg.help)
    p.add_argument("--run-dir", default="", help="output directory (default runs/<time>); the learner's is "
                   "<run dir>/learner")
    p.add_argument("--eval-episodes", type=int, default=20, help="evaluation episodes before and after "
                   "(0: skip)")
    p.add_argument("--single-process", action="store_true", help="all nodes in this process instead of "
                   "one OS process each")
    p.add_argument("--param", action="append", default=[], metavar="NODE:NAME:=VALUE",
                   help="extra ROS parameter for one node, e.g. learner:utd_ratio:=8 (repeatable)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a random one "
                   "in 10..99, so runs on one machine never see each other); learner and robot hosts need the "
                   "same --domain-id, --num-bridges and --timing-mode (docs/multi_host.md)")
    p.add_argument("--override", action="append", default=[], metavar="OPTION",
                   help="with --resume: let this option (e.g. --override steps) change the saved run's value "
                        "(repeatable); without it a contradicting option is refused")
    from porl_ros.tools.pretrain import PretrainSettings
    defaults = PretrainSettings()
    p.add_argument("--pretrain-demos", type=int, default=defaults.demos, help="without --checkpoint: BC "
                   "demonstrations (the other BC settings: porl-ros pretrain's defaults)")
    p.add_argument("--pretrain-bc-steps", type=int, default=defaults.bc_steps, help="without --checkpoint: BC steps")
    return p


def node_parameters(args: argparse.Namespace, checkpoint: str, run_dir: Path) -> dict[str, dict]:
    """Per-node parameters the run sets on top of the parameter files (checked against each
    node's settings, so a typo in --param fails here, before anything starts)."""
    from porl_ros.nodes.settings import NODE_SETTINGS, resolve

    values = {arg.name: getattr(args, arg.name) for arg in graph.RUN_ARGUMENTS if arg.runner_option}
    per_node = graph.run_parameters({**values, "checkpoint": checkpoint, "run_dir": str(run_dir / graph.LEARNER),
                                     "bag_dir": str(run_dir / BAG_DIR)})
    for item in args.param:
        try:
            node, rest = item.split(":", 1)
            name, value = rest.split(":=", 1)
        except ValueError:
            raise SystemExit(f"--param {item!r}: expected NODE:NAME:=VALUE, e.g. learner:utd_ratio:=8") from None
        if node not in NODE_SETTINGS:
            raise SystemExit(f"--param {item!r}: unknown node '{node}'; nodes: {sorted(NODE_SETTINGS)}")
        per_node[node][name] = _yaml_value(value)
    for node, params in per_node.items():
        try:
            resolve(node, args.profile, params)
        except ValueError as e:
            raise SystemExit(f"[porl] {node}: {e}") from None
    return per_node


def _yaml_value(text: str):
    import yaml
    return yaml.safe_load(text)


def ros_args(spec: graph.NodeSpec, files: list[str], params: dict) -> list[str]:
    """The --ros-args of one node: its name, namespace, parameter files and overrides."""
    out = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        out += ["-r", f"__ns:=/{spec.namespace}"]
    for path in files:
        out += ["--params-file", str(path)]
    for key, value in graph.node_parameters(spec, params).items():
        # JSON is YAML, which is how rcl reads the value: strings stay strings even when empty
        # or when they look like a number (a run id such as "83e1234...").
        out += ["-p", f"{key}:={json.dumps(value)}"]
    return out


class ProgressPrinter:
    """Subscribes to the learner's status and prints one live progress line."""

    def __init__(self, total_steps: Optional[int], run_id: str = "") -> None:
        import rclpy

        from porl_ros.core.phases import DONE
        from porl_ros.nodes.qos import STATUS_QOS
        from porl_ros_interfaces.msg import TrainingStatus

        self.total = total_steps
        self.run_id = run_id  # another run's status (same ROS domain) is not this run's progress
        self.done_phase = DONE
        self.latest = None
        self.tty = sys.stdout.isatty()
        self.last_print = 0.0
        self.latest_printed_done = False
        self.context = rclpy.Context()
        # The runner owns its signals (Ctrl-C stops the nodes and exits 130): rclpy's own SIGINT
        # handler would shut this context down instead, and the Ctrl-C could be lost.
        from rclpy.signals import SignalHandlerOptions
        rclpy.init(context=self.context, args=[], signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("porl_runner_progress", context=self.context)
        self.node.create_subscription(TrainingStatus, graph.STATUS_TOPIC, self._on_status, STATUS_QOS)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.running = True
        self.thread.start()

    def _spin(self) -> None:
        while self.running:
            self.executor.spin_once(timeout_sec=0.1)

    def _on_status(self, msg) -> None:
        if self.run_id and msg.run_id != self.run_id:
            return
        self.latest = msg
        now = time.monotonic()
        if self.latest_printed_done or (not self.tty and now - self.last_print < 10.0 and msg.phase != self.done_phase):
            return  # in a log file: one line every 10 s, not a carriage-return stream
        self.latest_printed_done = msg.phase == self.done_phase
        self.last_print = now
        total = f"/{self.total}" if self.total else ""
        line = (f"\r[porl] {msg.phase:<9} steps {msg.env_steps}{total}  updates {msg.gradient_updates} "
                f"({msg.updates_per_second:.0f}/s, UTD {msg.effective_utd:.1f})  episodes {msg.episodes}  "
                f"success {msg.success_rate:.2f}  policy v{msg.policy_version}  ")
        sys.stdout.write(line if self.tty else line.strip() + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
        sys.stdout.write("\n")


def write_run_report(run_dir: Path) -> None:
    """report.png + report.json from the learner's metrics; a failure here never fails the run."""
    from porl_ros.monitoring.report import ReportError, write_report
    try:
        report = write_report(run_dir)
    except ReportError as e:
        print(f"[porl] no report: {e}")
    except Exception as e:  # plotting problems must not hide the run's own result
        print(f"[porl] report failed ({type(e).__name__}: {e}); try `porl-ros report {run_dir}`")
    else:
        print(f"[porl] report: {report['png']} and {Path(report['png']).with_name('report.json')}")


def evaluate_checkpoint(env_id: str, checkpoint: str, episodes: int, episode_steps: int, seed: int):
    from porl_ros.envs.registry import make_env
    from porl_ros.tools.evaluate import actor_policy, evaluate_policy, load_policy_for_env

    env = make_env(env_id, max_episode_steps=episode_steps)
    try:
        actor, _ = load_policy_for_env(checkpoint, env)
        return evaluate_policy(env, actor_policy(actor, deterministic=True), episodes, seed=seed)
    finally:
        env.close()


def start_evaluations(run_dir: Path, args: argparse.Namespace, before, eval_seed: int):
    """Evaluate the learner's actor snapshots during the run (step 0 is the evaluation before)."""
    from porl_ros.monitoring.evaluations import EVALUATIONS_FILE, SNAPSHOT_DIR, SnapshotEvaluator

    results = run_dir / EVALUATIONS_FILE
    evaluator = SnapshotEvaluator(run_dir / graph.LEARNER / SNAPSHOT_DIR, results, args.env, args.eval_episodes,
                                  args.episode_steps, eval_seed)
    if 0 not in {row["env_steps"] for row in evaluator.results}:
        row = {"env_steps": 0, "success_rate": before.success_rate, "mean_return": before.mean_return,
               "std_return": before.std_return, "policy_version": 0, "episodes": args.eval_episodes}
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        evaluator.results.append(row)
    return evaluator.start()


def pretrain(args: argparse.Namespace, out: Path) -> str:
    from porl_ros.tools import pretrain as pretrain_tool
    argv = ["--env", args.env, "--out", str(out), "--demos", str(args.pretrain_demos),
            "--bc-steps", str(args.pretrain_bc_steps), "--max-episode-steps", str(args.episode_steps),
            "--seed", str(args.seed), "--eval-episodes", "0"] + ([] if sys.stdout.isatty() else ["--quiet"])
    print(f"[porl] no --checkpoint given: pre-training a BC policy on {args.env} into {out}")
    if pretrain_tool.main(argv) != 0:
        raise SystemExit("[porl] pre-training failed")
    return str(out)


def run_graph_processes(nodes: list[graph.NodeSpec], node_params: dict, args, run_dir: Path,
                        env: dict, learner_done=lambda: False, grace_s: float = 10.0) -> int:
    """Start each node as its own OS process; return when the learner exits (or one fails).

    Every node is required: one that ends while the run goes on (even with exit 0, e.g. a
    bridge that stopped early while the learner still waits for transitions) ends the run
    as a failure, unless the learner has reported the run done (`learner_done()`), after
    which the bridges stop first by design; `grace_s` is how long a node's end may precede
    the learner's own (or its done report) before that counts as a failure."""
    config_dir = graph.source_config_dir()
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    for spec in nodes:
        label = graph.node_label(spec)
        files = graph.node_config_files(spec.name, args.profile, config_dir, args.arm_config)
        cmd = [sys.executable, "-m", spec.module] + ros_args(spec, files, graph.with_run_files(
            spec, node_params[spec.name], run_dir))
        node_env = dict(env)
        if spec.name != graph.LEARNER:
            node_env["OMP_NUM_THREADS"] = "1"  # small inference: leave the cores to the learner
        with open(logs / f"{label}.log", "w") as log:
            procs[label] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=node_env,
                                            start_new_session=True)
    # Robot role: no learner here; the bridges stop when the learner reports the run done.
    bridge_labels = [label for label, spec in zip(procs, nodes) if spec.name in graph.BRIDGE_NODES]
    code = 0
    ended_at: dict[str, float] = {}  # nodes that ended with exit 0 before the run did
    try:
        while True:
            if graph.LEARNER in procs:
                learner_code = procs[graph.LEARNER].poll()
                if learner_code is not None:
                    code = learner_code
                    if code != 0:
                        _report_failed_node(graph.LEARNER, code, logs)
                    break
            elif all(procs[label].poll() == 0 for label in bridge_labels):
                break
            failed = {k: p.returncode for k, p in procs.items() if p.poll() is not None and p.returncode != 0}
            if failed:
                for label, rc in failed.items():
                    _report_failed_node(label, rc, logs)
                code = 1
                break
            now = time.monotonic()
            for label, proc in procs.items():
                if proc.poll() == 0 and label != graph.LEARNER:
                    ended_at.setdefault(label, now)
            if graph.LEARNER in procs:
                early = [k for k, t in ended_at.items() if now - t > grace_s and not learner_done()]
            else:  # robot role: the bridges end the run; a controller or policy server may not end first
                early = [k for k, t in ended_at.items() if k not in bridge_labels and now - t > grace_s
                         and not all(procs[b].poll() is not None for b in bridge_labels)]
            if early:
                for label in early:
                    _report_failed_node(label, 0, logs, why="ended (exit 0) while the run was still going "
                                        "(the learner has not reported it done): a required node is gone")
                code = 1
                break
            time.sleep(0.2)
    finally:
        for proc in procs.values():  # all at once: each saves its state in parallel
            _signal_group(proc, signal.SIGINT)
        for label, proc in procs.items():
            # The learner writes its final checkpoint (counters, networks, replay) on SIGINT: give it
            # the time, or a resume falls back to an older checkpoint and loses the updates since.
            _wait_or_kill(proc, LEARNER_STOP_TIMEOUT_S if label == graph.LEARNER else 10.0)
    return code


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass


def describe_exit(code: int) -> str:
    """'exit 3' or 'killed by SIGKILL' (a negative Popen return code is the signal)."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _report_failed_node(label: str, code: int, logs: Path, why: str = "") -> None:
    """Say which node failed and how, and show the end of that node's own log."""
    log = logs / f"{label}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
    how = why or (f"was {describe_exit(code)} (from outside: another process, a person or the OOM killer; "
                  f"its log ends without an error of its own)" if code < 0 else f"exited with code {code}")
    print(f"\n[porl] node {label} {how}; last lines of its log {log}:"
          + "".join(f"\n    {line}" for line in tail), flush=True)


LEARNER_STOP_TIMEOUT_S = 120.0


def _wait_or_kill(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Wait for a node already sent SIGINT; SIGKILL it after timeout_s. No second SIGINT: a node
    takes a second signal as "cut the orderly stop short" (it would break off a learner's update
    block or its final checkpoint)."""
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(5)


def run_graph_single_process(nodes: list[graph.NodeSpec], node_params: dict, args,
                             run_dir: Optional[Path] = None) -> int:
    """All nodes in this process, one multi-threaded executor."""
    import importlib

    import rclpy
    from rclpy.parameter import Parameter

    from porl_ros.nodes.params import ParameterError

    files = dict.fromkeys(path for spec in nodes for path in graph.node_config_files(
        spec.name, args.profile, graph.source_config_dir(), args.arm_config))  # each file once, in order
    ros_argv = ["--ros-args"] + [item for path in files for item in ("--params-file", path)]
    context = rclpy.Context()
    rclpy.init(args=ros_argv, context=context)
    created = []
    executor = rclpy.executors.MultiThreadedExecutor(num_threads=6, context=context)
    code = 0
    try:
        for spec in nodes:
            cls = getattr(importlib.import_module(spec.module), spec.node_class)
            params = graph.with_run_files(spec, node_params[spec.name], run_dir or Path(args.run_dir or "."))
            overrides = [Parameter(k, value=v) for k, v in graph.node_parameters(spec, params).items()]
            node = cls(context=context, namespace=spec.namespace or None, parameter_overrides=overrides)
            created.append(node)
            executor.add_node(node)
        # The learner's end ends the run; without one here (robot role), the bridges' ends.
        watched = [n for n in created if n.get_name() == graph.LEARNER] or [
            n for n, spec in zip(created, nodes) if spec.name in graph.BRIDGE_NODES]
        while rclpy.ok(context=context) and not all(n.finished for n in watched):
            executor.spin_once(timeout_sec=0.1)
    except ParameterError as e:
        print(f"[porl] {e}")
        code = 2
    finally:
        for node in reversed(created):
            if hasattr(node, "close"):
                node.close()
            node.destroy_node()
        executor.shutdown()
        context.try_shutdown()
    return code


# ---------------------------------------------------------------------------- the run's settings
RUN_SETTINGS_FILE = "run_settings.json"
# What defines a run: a resumed run takes them from run_settings.json; changing one needs --override.
# (The others, e.g. --eval-episodes, --domain-id or --single-process, may differ per start.)
RUN_DEFINING = ("env", "timing_mode", "seed", "episode_steps", "steps", "presample_steps", "eval_every",
                "profile", "num_bridges", "bridge", "checkpoint", "param", "run_id")


def explicit_options(argv: Optional[list[str]]) -> set[str]:
    """The options (dest names) given on the command line, whatever their value."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def save_run_settings(run_dir: Path, args: argparse.Namespace) -> None:
    """The run-defining settings (resolved: no profile default left implicit), written atomically."""
    from porl_ros.core._atomic import atomic_write_bytes
    body = {"format": "porl_ros.run_settings", "format_version": 1,
            "settings": {name: getattr(args, name) for name in RUN_DEFINING}}
    atomic_write_bytes(run_dir / RUN_SETTINGS_FILE, (json.dumps(body, indent=2) + "\n").encode())


def apply_saved_settings(run_dir: Path, args: argparse.Namespace, given: set[str]) -> None:
    """--resume: continue the run as it was saved. A given option that contradicts the saved value is
    refused naming it, unless --override names it."""
    path = run_dir / RUN_SETTINGS_FILE
    if not path.is_file():
        print(f"[porl] --resume: no {path} (a run from an older version): the options given now apply")
        return
    try:
        body = json.loads(path.read_text())
        saved = dict(body["settings"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"[porl] --resume: cannot read {path}: {e}") from None
    overrides = {name.lstrip("-").replace("-", "_") for name in args.override}
    unknown = sorted(overrides - set(RUN_DEFINING))
    if unknown:
        raise SystemExit(f"[porl] --override {unknown[0]}: not a run setting; these are: "
                         f"{', '.join(RUN_DEFINING)}")
    for name in RUN_DEFINING:
        if name not in saved:
            continue
        value, old = getattr(args, name), saved[name]
        if name in given and value != old and name not in overrides:
            raise SystemExit(f"[porl] --resume: {_option(name)} {value!r} contradicts the run being resumed "
                             f"({_option(name)} {old!r} in {path}); leave it out, or pass --override {name} "
                             f"to change it")
        if name not in given or name not in overrides:
            setattr(args, name, old)


def resolve_run_settings(args: argparse.Namespace, run_dir: Path) -> None:
    """Fill in what the profile would decide (steps, T, snapshot period), so run_settings.json
    holds the values the run really uses, not `None` = whatever the profile says next time."""
    from porl_ros.nodes.settings import resolve
    params = node_parameters(args, args.checkpoint, run_dir)
    config, settings = resolve(graph.LEARNER, args.profile, params[graph.LEARNER])
    if args.steps is None and settings.total_env_steps >= 1:
        args.steps = settings.total_env_steps
    if args.presample_steps is None:
        args.presample_steps = config.presample_steps
    if args.eval_every is None:
        args.eval_every = settings.snapshot_every_env_steps


def resumed_bridges(nodes: list[graph.NodeSpec], run_dir: Path) -> list[graph.NodeSpec]:
    """--resume: each bridge goes on from where the learner's state says it stopped (its next seq,
    a new episode index), so no seq, episode index or episode seed is used twice."""
    import dataclasses

    from porl_ros.core.learner_state import bridge_positions
    positions = bridge_positions(run_dir / graph.LEARNER / "state")
    out = []
    for spec in nodes:
        if spec.name in graph.BRIDGE_NODES and spec.parameters.get("bridge_id") in positions:
            seq, episode = positions[spec.parameters["bridge_id"]]
            spec = dataclasses.replace(spec, parameters={**spec.parameters, "first_seq": seq,
                                                         "first_episode": episode})
            print(f"[porl] bridge {spec.parameters['bridge_id']} continues at seq {seq}, episode {episode}")
        out.append(spec)
    return out


# Checks of the runner's own numbers: (argument, test, what it must be). None means "not given".
_NUMBER_CHECKS = (
    ("steps", lambda v: v is None or v >= 1, ">= 1 (the run's total env steps; a run without an end is "
                                             "`--param learner:total_env_steps:=0`)"),
    ("presample_steps", lambda v: v is None or v >= 0, ">= 0"),
    ("episode_steps", lambda v: v is None or v >= 1, ">= 1"),
    ("eval_every", lambda v: v is None or v >= 0, ">= 0"),
    ("seed", lambda v: v >= 0, ">= 0"),
    ("num_bridges", lambda v: v >= 1, ">= 1"),
    ("eval_episodes", lambda v: v >= 0, ">= 0"),
    ("domain_id", lambda v: v is None or 0 <= v <= 232, "in 0..232 (ROS_DOMAIN_ID)"),
    ("pretrain_demos", lambda v: v >= 1, ">= 1"),
    ("pretrain_bc_steps", lambda v: v >= 1, ">= 1"),
)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument checked before any work (pre-training, files, processes): SystemExit
    naming the argument."""
    for name, test, text in _NUMBER_CHECKS:
        value = getattr(args, name)
        if not test(value):
            raise SystemExit(f"[porl] {_option(name)} {value}: must be {text}")
    if args.steps is not None and args.presample_steps is not None and args.presample_steps > args.steps:
        raise SystemExit(f"[porl] --presample-steps {args.presample_steps}: must be <= --steps {args.steps} "
                         f"(else the actor is never fine-tuned)")
    if args.role != "all" and args.domain_id is None:
        raise SystemExit(f"--role {args.role}: give --domain-id (the same on the learner and robot machines)")
    if args.bridge_ids and args.role != "robot":
        raise SystemExit("--bridge-ids: only with --role robot")
    if args.role == "robot" and (not args.checkpoint or args.eval_episodes):
        raise SystemExit("--role robot: give --checkpoint (the learner host's pre-trained actor, copied here) "
                         "and --eval-episodes 0 (the learner host evaluates)")
    if args.bridge == "arm" and (not args.checkpoint or args.eval_episodes):
        raise SystemExit("--bridge arm: give --checkpoint (no simulator to pre-train in) and --eval-episodes 0 "
                         "(no simulator to evaluate in)")
    if args.resume and not args.run_dir:
        raise SystemExit("--resume needs --run-dir (the run to continue)")
    if args.arm_config and not Path(args.arm_config).is_file():
        raise SystemExit(f"[porl] --arm-config {args.arm_config}: no such file")
    try:
        graph.nodes_for_role(graph.finetune_graph(args.num_bridges, args.bridge), args.role, args.bridge_ids)
    except ValueError as e:
        raise SystemExit(f"[porl] --role/--bridge-ids: {e}") from None


# Set by scripts/porl-env when it chose ROS_AUTOMATIC_DISCOVERY_RANGE itself (the user had not).
WRAPPER_DEFAULT_MARK = "PORL_DISCOVERY_RANGE_DEFAULT"


def discovery_range(role: str, environ) -> tuple[str, str]:
    """ROS_AUTOMATIC_DISCOVERY_RANGE for this run, and a note when a default was replaced.

    One machine (role all): keep discovery on it. Split across machines (learner, robot):
    the other host must be found, so SUBNET. A value the user set is always kept; the
    LOCALHOST that scripts/porl-env sets by default (marked with WRAPPER_DEFAULT_MARK) is not
    the user's and gives way to SUBNET for a multi-host role (docs/multi_host.md)."""
    wanted = "LOCALHOST" if role == "all" else "SUBNET"
    current = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if not current:
        return wanted, ""
    if environ.get(WRAPPER_DEFAULT_MARK) == "1" and current != wanted:
        return wanted, (f"--role {role}: ROS_AUTOMATIC_DISCOVERY_RANGE={wanted} (scripts/porl-env's default "
                        f"{current} replaced; set the variable yourself to choose)")
    return current, ""


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP stop the run as Ctrl-C does (the graph's processes are stopped with
    SIGINT and save their state) instead of leaving the nodes running without their runner.
    SIGINT gets the same handler, so a second Ctrl-C cannot cut the nodes' state saving short."""
    stopping = []

    def handler(signum, _frame):
        if stopping:  # already stopping the nodes: a second signal must not cut that short
            print(f"[porl] {signal.Signals(signum).name}: already stopping the nodes", flush=True)
            return
        stopping.append(signum)
        raise KeyboardInterrupt(signum)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, handler)


def choose_domain(args: argparse.Namespace, attempts: int = 5) -> int:
    """The run's ROS_DOMAIN_ID. On one machine (role all) a domain where another porl_ros graph's
    nodes are seen is not taken when the pick is random (another is drawn); an explicit
    --domain-id is kept with a warning (it may be a run being resumed whose killed nodes DDS still
    lists until their lease runs out). Run identity keeps a collision harmless either way; split
    roles skip the look, since the other host's nodes belong on the domain."""
    from porl_ros.nodes.domain_probe import nodes_on_domain
    pick = random.SystemRandom()
    domain = args.domain_id if args.domain_id is not None else pick.randint(10, 99)
    if args.role != "all":
        return domain
    graph_nodes = tuple(name for name in graph.NODE_CLASSES if name != graph.SIM_HARDWARE)
    for _ in range(attempts):
        busy = [n for n in nodes_on_domain(domain) if n.rsplit("/", 1)[-1].startswith(graph_nodes)]
        if not busy:
            return domain
        seen = ", ".join(busy[:4]) + (" ..." if len(busy) > 4 else "")
        if args.domain_id is not None:
            print(f"[porl] warning: --domain-id {domain} already has porl_ros nodes ({seen}): another run "
                  f"(its messages carry another run id and are refused) or this run's killed nodes")
            return domain
        print(f"[porl] ROS_DOMAIN_ID {domain} is in use by another porl_ros run ({seen}): picking another")
        domain = pick.randint(10, 99)
    raise SystemExit(f"[porl] no free ROS_DOMAIN_ID in {attempts} random picks; give --domain-id")


def check_environment(args: argparse.Namespace) -> None:
    """The sim bridge's environment exists and fits --checkpoint (sizes and bounds), checked in this
    process before anything starts: a mismatch found by the nodes would only show after start-up."""
    from porl_ros.core.checkpoint import CheckpointError, load_actor
    needs_env = args.bridge == "sim" and (args.role != "learner" or not args.checkpoint)
    if not needs_env:
        if args.checkpoint:
            try:
                load_actor(args.checkpoint)
            except CheckpointError as e:
                raise SystemExit(f"[porl] --checkpoint: {e}") from None
        return
    from porl_ros.envs.base import EnvSetupError
    from porl_ros.envs.registry import make_env
    from porl_ros.tools.evaluate import load_policy_for_env
    try:
        env = make_env(args.env, max_episode_steps=args.episode_steps)
    except (ValueError, KeyError, ImportError, EnvSetupError) as e:
        raise SystemExit(f"[porl] --env {args.env}: {e}") from None
    try:
        if args.checkpoint:
            load_policy_for_env(args.checkpoint, env)
    except CheckpointError as e:
        raise SystemExit(f"[porl] --checkpoint does not fit --env {args.env}: {e}") from None
    finally:
        env.close()


def main(argv: Optional[list[str]] = None) -> int:
    _stop_on_signals()
    args = build_parser().parse_args(argv)
    if args.override and not args.resume:
        raise SystemExit("[porl] --override: only with --resume (a new run takes every option as given)")
    run_dir = Path(args.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    if args.resume and args.run_dir:
        apply_saved_settings(run_dir, args, explicit_options(argv))
    check_arguments(args)  # before anything is created
    if args.run_id is None:  # (a resumed run has its own from run_settings.json)
        # One machine: a fresh identity, so no other run's learner or bridge (or a forger without
        # it) can stop or feed this one. Split hosts must agree: unless --run-id is given, accept any.
        import secrets
        args.run_id = secrets.token_hex(8) if args.role == "all" else ""
    learner_state = run_dir / "learner" / "state"
    if not args.resume and learner_state.is_dir() and any(learner_state.iterdir()):
        raise SystemExit(f"[porl] {run_dir} already holds a run (learner state in {learner_state}); "
                         f"pass --resume to continue it, or choose another --run-dir")
    if args.resume and not args.checkpoint and (run_dir / "pretrained").is_dir():
        args.checkpoint = str(run_dir / "pretrained")  # the resumed run's own pre-trained actor
    from porl_ros.nodes.settings import resolve
    if args.episode_steps is None:  # evaluations and demonstrations use the bridge's episode length
        args.episode_steps = resolve(graph.SIM_BRIDGE, args.profile)[0].max_episode_steps
    node_parameters(args, args.checkpoint, run_dir)  # a bad --param fails here, before any pre-training
    resolve_run_settings(args, run_dir)
    check_environment(args)
    run_dir.mkdir(parents=True, exist_ok=True)
    discovery, note = discovery_range(args.role, os.environ)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = discovery
    if note:
        print(f"[porl] {note}")
    domain = choose_domain(args)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    started = time.monotonic()

    checkpoint = args.checkpoint = args.checkpoint or pretrain(args, run_dir / "pretrained")
    before = evaluator = None
    if args.eval_episodes:
        from porl_ros.tools.evaluate import RUN_EVAL_SEED
        eval_seed = RUN_EVAL_SEED + args.seed
        before = evaluate_checkpoint(args.env, checkpoint, args.eval_episodes, args.episode_steps, eval_seed)
        print(f"[porl] before fine-tuning: success {before.success_rate:.2f}, return {before.mean_return:.1f} "
              f"({args.eval_episodes} episodes)")
        evaluator = start_evaluations(run_dir, args, before, eval_seed)

    nodes = graph.nodes_for_role(graph.finetune_graph(args.num_bridges, args.bridge, args.record, args.foxglove),
                                 args.role, args.bridge_ids)
    if args.resume:
        nodes = resumed_bridges(nodes, run_dir)
    if args.role != "robot":
        save_run_settings(run_dir, args)  # what a later --resume continues
    params = node_parameters(args, checkpoint, run_dir)
    learner_config, learner_settings = resolve(graph.LEARNER, args.profile, params[graph.LEARNER])
    print(f"[porl] fine-tuning on {args.env} with {len(nodes)} nodes "
          f"({'one process' if args.single_process else 'one process each'}), ROS_DOMAIN_ID={domain}, "
          f"profile {args.profile}; logs in {run_dir / 'logs'}")
    if any(spec.name == graph.RECORDER for spec in nodes):
        if graph.records(args.bridge, args.record):
            print(f"[porl] recording into {run_dir / BAG_DIR} (replay: ros2 bag play {run_dir / BAG_DIR}; "
                  f"off: --no-record)")
        if args.foxglove:
            print(f"[porl] live view: Foxglove -> open connection -> ws://{args.foxglove_host}:{args.foxglove} "
                  f"(layout: config/foxglove_layout.json)")
    progress = ProgressPrinter(learner_settings.total_env_steps, args.run_id or "")
    interrupted = False
    from porl_ros.core.phases import DONE
    try:
        if args.single_process:
            code = run_graph_single_process(nodes, params, args, run_dir)
        else:
            code = run_graph_processes(nodes, params, args, run_dir, dict(os.environ),
                                       learner_done=lambda: progress.latest is not None
                                       and progress.latest.phase == DONE)
    except KeyboardInterrupt as e:
        # Ctrl-C, or SIGTERM / SIGHUP (see _stop_on_signals): the nodes were stopped with
        # SIGINT on the way out, so each saved its state as on Ctrl-C.
        interrupted = True
        signum = e.args[0] if e.args and isinstance(e.args[0], int) else signal.SIGINT
        code = 128 + int(signum)
        print(f"\n[porl] stopped by {signal.Signals(signum).name}: nodes stopped as on Ctrl-C "
              f"(state saved; continue with --resume --run-dir {run_dir})", flush=True)
    finally:
        progress.close()
    evaluations = evaluator.finish(timeout_s=5.0 if code else 600.0) if evaluator else []
    if code != 0:
        print(f"[porl] {'interrupted' if interrupted else 'fine-tuning failed'} (exit {code}); run dir {run_dir}")
        if args.role != "robot":
            write_run_report(run_dir)  # the curves so far still help to see what went wrong
        return code
    if args.role == "robot":
        print(f"[porl] the learner reported the run done; robot nodes stopped; logs in {run_dir / 'logs'}")
        return 0

    final = run_dir / graph.LEARNER / "final_actor"
    summary = {"env": args.env, "checkpoint": checkpoint, "final_actor": str(final), "profile": args.profile,
               "timing_mode": args.timing_mode, "seconds": round(time.monotonic() - started, 1),
               "presample_steps": learner_config.presample_steps,
               "total_env_steps": learner_settings.total_env_steps}
    learner_summary = run_dir / "learner" / "learner_summary.json"
    if learner_summary.is_file():
        summary["learner"] = json.loads(learner_summary.read_text())
    if args.eval_episodes:
        after = evaluate_checkpoint(args.env, str(final), args.eval_episodes, args.episode_steps, 10_000 + args.seed)
        summary["before"] = before.to_dict() | {"per_episode": None}
        summary["after"] = after.to_dict() | {"per_episode": None}
        summary["evaluations"] = evaluations
        print(f"[porl] success rate before fine-tuning: {before.success_rate:.2f} "
              f"(return {before.mean_return:.1f}); after: {after.success_rate:.2f} "
              f"(return {after.mean_return:.1f}) over {args.eval_episodes} episodes each")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_run_report(run_dir)
    print(f"[porl] done in {summary['seconds']:.0f} s; final actor {final}; summary {run_dir / 'summary.json'}")
    return 0
