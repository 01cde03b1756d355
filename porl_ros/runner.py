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
        out += ["-p", f"{key}:={json.dumps(value) if not isinstance(value, str) else value}"]
    return out


class ProgressPrinter:
    """Subscribes to the learner's status and prints one live progress line."""

    def __init__(self, total_steps: Optional[int]) -> None:
        import rclpy

        from porl_ros.core.phases import DONE
        from porl_ros.nodes.qos import STATUS_QOS
        from porl_ros_interfaces.msg import TrainingStatus

        self.total = total_steps
        self.done_phase = DONE
        self.latest = None
        self.tty = sys.stdout.isatty()
        self.last_print = 0.0
        self.latest_printed_done = False
        self.context = rclpy.Context()
        rclpy.init(context=self.context, args=[])
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
                        env: dict) -> int:
    """Start each node as its own OS process; return when the learner exits (or one fails)."""
    config_dir = graph.source_config_dir()
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: dict[str, subprocess.Popen] = {}
    for spec in nodes:
        label = f"{spec.namespace}.{spec.name}" if spec.namespace else spec.name
        files = graph.node_config_files(spec.name, args.profile, config_dir, args.arm_config)
        cmd = [sys.executable, "-m", spec.module] + ros_args(spec, files, node_params[spec.name])
        node_env = dict(env)
        if spec.name != graph.LEARNER:
            node_env["OMP_NUM_THREADS"] = "1"  # small inference: leave the cores to the learner
        with open(logs / f"{label}.log", "w") as log:
            procs[label] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=node_env,
                                            start_new_session=True)
    # Robot role: no learner here; the bridges stop when the learner reports the run done.
    bridge_labels = [label for label, spec in zip(procs, nodes) if spec.name in graph.BRIDGE_NODES]
    code = 0
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
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            _stop(proc)
    return code


def _report_failed_node(label: str, code: int, logs: Path) -> None:
    """Say which node failed and show the end of its log (usually one line naming the cause)."""
    log = logs / f"{label}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else []
    print(f"\n[porl] node {label} exited with code {code}; log {log}" + "".join(f"\n    {line}" for line in tail))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def run_graph_single_process(nodes: list[graph.NodeSpec], node_params: dict, args) -> int:
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
            overrides = [Parameter(k, value=v) for k, v in graph.node_parameters(spec, node_params[spec.name]).items()]
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


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.role != "all" and args.domain_id is None:
        raise SystemExit(f"--role {args.role}: give --domain-id (the same on the learner and robot machines)")
    if args.bridge_ids and args.role != "robot":
        raise SystemExit("--bridge-ids: only with --role robot")
    if args.role == "robot" and (not args.checkpoint or args.eval_episodes):
        raise SystemExit("--role robot: give --checkpoint (the learner host's pre-trained actor, copied here) "
                         "and --eval-episodes 0 (the learner host evaluates)")
    domain = args.domain_id if args.domain_id is not None else random.SystemRandom().randint(10, 99)
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    # One machine: keep discovery on it. Split across machines: the other host must be found.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST" if args.role == "all" else "SUBNET")
    started = time.monotonic()

    if args.bridge == "arm" and (not args.checkpoint or args.eval_episodes):
        raise SystemExit("--bridge arm: give --checkpoint (no simulator to pre-train in) and --eval-episodes 0 "
                         "(no simulator to evaluate in)")
    learner_state = run_dir / "learner" / "state"
    if args.resume and not args.run_dir:
        raise SystemExit("--resume needs --run-dir (the run to continue)")
    if not args.resume and learner_state.is_dir() and any(learner_state.iterdir()):
        raise SystemExit(f"[porl] {run_dir} already holds a run (learner state in {learner_state}); "
                         f"pass --resume to continue it, or choose another --run-dir")
    if args.resume and not args.checkpoint and (run_dir / "pretrained").is_dir():
        args.checkpoint = str(run_dir / "pretrained")  # the resumed run's own pre-trained actor
    from porl_ros.nodes.settings import resolve
    if args.episode_steps is None:  # evaluations and demonstrations use the bridge's episode length
        args.episode_steps = resolve(graph.SIM_BRIDGE, args.profile)[0].max_episode_steps
    node_parameters(args, args.checkpoint, run_dir)  # a bad --param fails here, before any pre-training
    checkpoint = args.checkpoint or pretrain(args, run_dir / "pretrained")
    before = evaluator = None
    if args.eval_episodes:
        from porl_ros.tools.evaluate import RUN_EVAL_SEED
        eval_seed = RUN_EVAL_SEED + args.seed
        before = evaluate_checkpoint(args.env, checkpoint, args.eval_episodes, args.episode_steps, eval_seed)
        print(f"[porl] before fine-tuning: success {before.success_rate:.2f}, return {before.mean_return:.1f} "
              f"({args.eval_episodes} episodes)")
        evaluator = start_evaluations(run_dir, args, before, eval_seed)

    try:
        nodes = graph.nodes_for_role(graph.finetune_graph(args.num_bridges, args.bridge, args.record, args.foxglove),
                                     args.role, args.bridge_ids)
    except ValueError as e:
        raise SystemExit(f"[porl] --role/--bridge-ids: {e}") from None
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
    progress = ProgressPrinter(learner_settings.total_env_steps)
    interrupted = False
    try:
        if args.single_process:
            code = run_graph_single_process(nodes, params, args)
        else:
            code = run_graph_processes(nodes, params, args, run_dir, dict(os.environ))
    except KeyboardInterrupt:
        interrupted, code = True, 130
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
