"""Run a command as N array tasks, on this machine or through Slurm, and check every task.

    python -m k2d.launch --backend local --nj 2 --tasks 4 --log-dir LOGS -- python -m k2d.pseudo_label ... \\
        --shard {task} --num-shards {tasks}
    python -m k2d.launch --backend slurm --gpus 1 --cpus 8 --mem 32G --time 4:00:00 --tasks 64 --log-dir LOGS -- ...
    python -m k2d.launch --backend slurm --nodes 2 --procs-per-node 8 --torchrun --log-dir LOGS -- \\
        -m k2d.distill ...          # one torchrun per node, rendezvous on the first node
    python -m k2d.launch --backend slurm --cmd-config egs/NAME/conf/cmd.yaml --kind decode \\
        --commands jobs.txt --log-dir LOGS          # task I runs line I+1 of jobs.txt (a shell command)

`{task}` and `{tasks}` in the command become the task's index (0..N-1) and N. Resources come from the
--kind section of --cmd-config (the recipe's conf/cmd.yaml) and then the options given here. Each task writes
LOG_DIR/task-I.log and, when it ends, LOG_DIR/task-I.status (its exit status); a task with no status
was killed or cancelled. The launcher waits for all, names every failed task with its log, and exits
non-zero if any failed. Locally at most --nj tasks run at once; under Slurm the tasks are one job array
(`sbatch --array --wait`) with the resources given (the recipe's conf/cmd.yaml, read by run.sh --cmd slurm).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from k2d.utils import setup_logging

log = logging.getLogger("k2d.launch")

KINDS = ("label", "train", "decode")
RESOURCES = ("gpus", "cpus", "mem", "time", "nodes", "procs_per_node")  # per kind in cmd.yaml
CLUSTER = ("partition", "max_running", "sbatch_options")  # for every kind


def read_cmd_config(path: Path, kind: str) -> dict:
    """The resources of one kind of job: cmd.yaml's slurm.KIND with slurm's cluster-wide keys."""
    try:
        slurm = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).get("slurm") or {}
    except (OSError, yaml.YAMLError, AttributeError) as error:
        raise ValueError(f"{path}: cannot read it as a YAML mapping ({error})") from error
    unknown = [key for key in slurm if key not in KINDS + CLUSTER]
    unknown += [f"{k}.{key}" for k in KINDS for key in (slurm.get(k) or {}) if key not in RESOURCES]
    if unknown:
        raise ValueError(f"{path}: unknown key(s) under slurm: {', '.join(unknown)} "
                         f"(kinds: {', '.join(KINDS)}; resources: {', '.join(RESOURCES + CLUSTER)})")
    resources = {key: slurm[key] for key in CLUSTER if slurm.get(key)}
    resources.update({key: value for key, value in (slurm.get(kind) or {}).items() if value not in (None, "")})
    return resources


def task_command(command: list[str], task: int, tasks: int) -> list[str]:
    return [part.replace("{task}", str(task)).replace("{tasks}", str(tasks)) for part in command]


def commands_file_command(path: Path) -> list[str]:
    """The command of a task of --commands FILE: its non-empty line {task}+1, run by bash."""
    lines = f"awk NF {shlex.quote(str(Path(path).resolve()))}"  # the non-empty lines
    return ["bash", "-c", f'eval "$({lines} | sed -n "$(( $1 + 1 ))p")"', "task", "{task}"]


def status_path(log_dir: Path, task: int) -> Path:
    return log_dir / f"task-{task}.status"


def log_path(log_dir: Path, task: int) -> Path:
    return log_dir / f"task-{task}.log"


def failed_tasks(log_dir: Path, tasks: int) -> list[tuple[int, str]]:
    """(task, why) for each task that did not end with status 0."""
    failed = []
    for task in range(tasks):
        path = status_path(log_dir, task)
        status = path.read_text().strip() if path.is_file() else None
        if status is None:
            failed.append((task, "no exit status: killed or cancelled"))
        elif status != "0":
            failed.append((task, f"exit status {status}"))
    return failed


def threads_per_task(nj: int) -> str:
    """Local tasks share this machine's cores instead of each taking all of them."""
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nj))


class Interrupted(Exception):
    """SIGTERM or SIGINT reached the launcher: its tasks are stopped before it exits."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


# A task gets this long to stop after the launcher passed the signal on, then it is killed.
STOP_GRACE_SECONDS = 30.0


def run_local(command: list[str], tasks: int, nj: int, log_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": threads_per_task(min(nj, tasks))}
    running: dict[int, tuple[subprocess.Popen, object]] = {}
    pending = list(range(tasks))
    try:
        while pending or running:
            while pending and len(running) < nj:
                task = pending.pop(0)
                log_file = open(log_path(log_dir, task), "w")  # noqa: SIM115 - closed when the task ends
                process = subprocess.Popen(task_command(command, task, tasks), stdout=log_file,
                                           stderr=subprocess.STDOUT, env=env)
                running[task] = (process, log_file)
            for task, (process, log_file) in list(running.items()):
                code = process.poll()
                if code is not None:
                    log_file.close()
                    status_path(log_dir, task).write_text(f"{code}\n")
                    del running[task]
            time.sleep(0.2)
    except Interrupted as interrupted:
        # pass the signal on and wait: a task left running would work its shard beside the next run's
        for process, _ in running.values():
            process.send_signal(interrupted.signum)
        for task, (process, log_file) in running.items():
            try:
                code = process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            log_file.close()
            status_path(log_dir, task).write_text(f"{code}\n")
        log.error("%s: stopped %d running task(s); %d not started", interrupted, len(running), len(pending))
        raise


def slurm_script(command: list[str], log_dir: Path, torchrun: dict | None) -> str:
    """The batch script: one array task ({task} = $SLURM_ARRAY_TASK_ID), or one torchrun per node."""
    lines = ["#!/usr/bin/env bash", "set -u", 'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"']
    if torchrun:
        status = shlex.quote(str(status_path(log_dir, 0)))
        # every node's torchrun meets the others at the first node of the allocation
        # (the port: given, or one per job, so that two jobs sharing a node do not meet)
        port = torchrun.get("port") or "$(( 20000 + SLURM_JOB_ID % 20000 ))"
        lines += ['head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)', f"port={port}",
                  "srun --ntasks-per-node 1 torchrun --nnodes \"$SLURM_NNODES\" "
                  f"--nproc-per-node {torchrun['procs_per_node']} --rdzv-backend c10d --rdzv-id \"$SLURM_JOB_ID\" "
                  f"--rdzv-endpoint \"$head:$port\" {shlex.join(command)}",
                  "code=$?", f'echo "$code" > {status}', 'exit "$code"']
    else:
        quoted = [shlex.quote(part).replace("{task}", "'\"$SLURM_ARRAY_TASK_ID\"'") for part in command]
        lines += [" ".join(quoted), "code=$?",
                  f'echo "$code" > {shlex.quote(str(log_dir))}/task-"$SLURM_ARRAY_TASK_ID".status', 'exit "$code"']
    return "\n".join(lines) + "\n"


def sbatch_command(tasks: int, log_dir: Path, resources: dict, torchrun: dict | None) -> list[str]:
    options = ["sbatch", "--wait", "--parsable", "--job-name", f"k2d-{log_dir.name}"]
    if torchrun:
        options += ["--nodes", str(torchrun["nodes"]), "--output", str(log_path(log_dir, 0))]
    else:
        limit = f"%{resources['max_running']}" if resources.get("max_running") else ""
        options += ["--array", f"0-{tasks - 1}{limit}", "--output", str(log_dir / "task-%a.log")]
    gpus = resources.get("gpus")
    if gpus:
        options.append(f"--gpus-per-node={gpus}" if torchrun else f"--gres=gpu:{gpus}")
    for key, flag in (("cpus", "--cpus-per-task"), ("mem", "--mem"), ("time", "--time"),
                      ("partition", "--partition")):
        if resources.get(key):
            options.append(f"{flag}={resources[key]}")
    return options + list(resources.get("sbatch_options") or [])


def run_slurm(command: list[str], tasks: int, log_dir: Path, resources: dict, torchrun: dict | None) -> None:
    script = log_dir / "job.sh"
    script.write_text(slurm_script([p.replace("{tasks}", str(tasks)) for p in command], log_dir, torchrun))
    sbatch = [*sbatch_command(tasks, log_dir, resources, torchrun), str(script)]
    log.info("submitting: %s", shlex.join(sbatch))
    process = subprocess.Popen(sbatch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = ""
    try:
        job = process.stdout.readline().strip().split(";")[0]  # --parsable: the id, as soon as it is submitted
        _, errors = process.communicate()  # --wait: sbatch returns when every task has ended
    except Interrupted as interrupted:
        if job:
            subprocess.run(["scancel", job], check=False)
            log.error("%s: cancelled Slurm job %s", interrupted, job)
        process.wait()
        raise
    if job:
        log.info("Slurm job %s ended", job)
    elif process.returncode != 0:
        raise RuntimeError(f"sbatch could not submit the job: {errors.strip() or 'no message'}")


def run_backend(command: list[str], tasks: int, log_dir: Path, backend: str, nj: int, resources: dict | None,
                torchrun: dict | None) -> None:
    if backend == "local":
        if torchrun:
            command = ["torchrun", "--standalone", "--nproc-per-node", str(torchrun["procs_per_node"]), *command]
        run_local(command, tasks, max(1, nj), log_dir)
    elif backend == "slurm":
        run_slurm(command, tasks, log_dir, resources or {}, torchrun)
    else:
        raise ValueError(f"backend must be local or slurm, got {backend!r}")


def launch(command: list[str], tasks: int, log_dir: Path, backend: str = "local", nj: int = 1,
           resources: dict | None = None, torchrun: dict | None = None) -> int:
    """Run the tasks; returns 0 when every one ended with status 0, else 1 (the failed ones are logged)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    tasks = 1 if torchrun else tasks
    for task in range(tasks):
        status_path(log_dir, task).unlink(missing_ok=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_interrupted)
    try:
        run_backend(command, tasks, log_dir, backend, nj, resources, torchrun)
    except Interrupted as interrupted:
        return 128 + interrupted.signum
    except (RuntimeError, FileNotFoundError) as error:
        log.error("%s", error)
        return 1
    failed = failed_tasks(log_dir, tasks)
    for task, why in failed:
        log.error("task %d of %d failed (%s); its log is %s%s", task, tasks, why, log_path(log_dir, task),
                  log_tail(log_path(log_dir, task)))
    if failed:
        log.error("%d of %d task(s) failed; run the same command again to redo only what they left", len(failed),
                  tasks)
    else:
        log.info("%d task(s) done; logs in %s", tasks, log_dir)
    return 1 if failed else 0


def log_tail(path: Path, lines: int = 5) -> str:
    if not path.is_file():
        return ""
    tail = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n").splitlines()[-lines:]
    return "".join(f"\n    | {line}" for line in tail)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="local", choices=("local", "slurm"))
    parser.add_argument("--tasks", type=int, default=1, help="array tasks ({task} = 0 .. N-1 in the command)")
    parser.add_argument("--commands", type=Path, help="a file of shell commands, one task per line (instead of "
                                                      "-- COMMAND and --tasks)")
    parser.add_argument("--nj", type=int, default=1, help="local: tasks running at once")
    parser.add_argument("--log-dir", type=Path, required=True, help="task-I.log and task-I.status go here")
    parser.add_argument("--cmd-config", type=Path, help="slurm: the recipe's cmd.yaml (resources per kind)")
    parser.add_argument("--kind", choices=KINDS, default="label", help="slurm: which section of --cmd-config")
    parser.add_argument("--gpus", help="slurm: GPUs per task (per node with --torchrun)")
    parser.add_argument("--cpus", help="slurm: CPUs per task")
    parser.add_argument("--mem", help="slurm: memory per task, e.g. 32G")
    parser.add_argument("--time", help="slurm: time limit, e.g. 4:00:00")
    parser.add_argument("--partition", help="slurm: partition")
    parser.add_argument("--max-running", type=int, help="slurm: array tasks running at once")
    parser.add_argument("--sbatch-option", action="append", help="slurm: any other sbatch option (repeatable)")
    parser.add_argument("--torchrun", action="store_true", help="run the command (-m MODULE ...) under torchrun: "
                                                               "one per node, --procs-per-node processes each")
    parser.add_argument("--nodes", type=int, help="torchrun: nodes (default: cmd.yaml, else 1)")
    parser.add_argument("--procs-per-node", type=int, help="torchrun: processes per node (default: cmd.yaml, else 1)")
    parser.add_argument("--port", type=int, help="torchrun: rendezvous port on the first node (default: "
                                                  "20000 + the job id mod 20000)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    parser = get_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.commands:
        if command:
            parser.error("give either --commands FILE or -- COMMAND, not both")
        if not args.commands.is_file():
            parser.error(f"--commands: {args.commands} does not exist")
        args.tasks = sum(1 for line in args.commands.read_text().splitlines() if line.strip())
        command = commands_file_command(args.commands)
        if args.tasks == 0:
            log.info("%s lists no command: nothing to run", args.commands)
            return 0
    if not command:
        parser.error("no command given (after --)")
    if args.tasks < 1 or args.nj < 1:
        parser.error("--tasks and --nj must be at least 1")
    try:
        resources = read_cmd_config(args.cmd_config, args.kind) if args.cmd_config else {}
    except ValueError as error:
        parser.error(str(error))
    given = {"gpus": args.gpus, "cpus": args.cpus, "mem": args.mem, "time": args.time, "partition": args.partition,
             "max_running": args.max_running, "sbatch_options": args.sbatch_option,
             "nodes": args.nodes, "procs_per_node": args.procs_per_node}
    resources.update({key: value for key, value in given.items() if value is not None})
    torchrun = ({"nodes": int(resources.get("nodes") or 1), "procs_per_node": int(resources.get("procs_per_node") or 1),
                 "port": args.port} if args.torchrun else None)
    return launch(command, args.tasks, args.log_dir, args.backend, args.nj, resources, torchrun)


if __name__ == "__main__":
    sys.exit(main())
