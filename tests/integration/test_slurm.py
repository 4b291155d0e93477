"""run.sh --cmd slurm on a real single-node Slurm cluster started for the test (Debian's slurm-wlm, auth/none):
stages 1 and 3 as 2-task job arrays give what the local launcher gives, stage 5 is a 2-process gloo DDP job
(torchrun under srun) with the training losses of the same job run locally, stage 6 runs one array task per
decode, and an array task cancelled with scancel is named with its log and resumed by a rerun."""

from __future__ import annotations

import contextlib
import getpass
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import write_tiny_conf

pytestmark = pytest.mark.slow

CORPUS = {"seed": 5, "train_labelled_utterances": 4, "dev_utterances": 2, "train_unlabelled_recordings": 6,
          "train_unlabelled_minutes": 0.3, "test_recordings": 1, "test_minutes": 0.25}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 - 512
    return 2000


def slurm_conf(directory: Path) -> str:
    host, user = socket.gethostname(), getpass.getuser()
    return "\n".join([
        "ClusterName=k2dtest", f"SlurmctldHost={host}", "AuthType=auth/none", "CredType=cred/none",
        f"SlurmUser={user}", f"SlurmdUser={user}", f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        f"StateSaveLocation={directory}/state", f"SlurmdSpoolDir={directory}/spool",
        f"SlurmctldPidFile={directory}/slurmctld.pid", f"SlurmdPidFile={directory}/slurmd.pid",
        f"SlurmctldLogFile={directory}/slurmctld.log", f"SlurmdLogFile={directory}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "ReturnToService=2", "JobCompType=jobcomp/none", "AccountingStorageType=accounting_storage/none",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mb()} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM_CONF of a running single-node cluster; the daemons are stopped at the end."""
    missing = [tool for tool in ("slurmctld", "slurmd", "sbatch", "srun", "squeue", "scancel")
               if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} not found; Debian/Ubuntu: apt install slurm-wlm)")
    directory = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (directory / sub).mkdir()
    conf = directory / "slurm.conf"
    conf.write_text(slurm_conf(directory))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = [subprocess.run([daemon, "-f", str(conf)], env=env, capture_output=True, text=True)
               for daemon in ("slurmctld", "slurmd")]
    deadline = time.time() + 60
    state = ""
    while time.time() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()
        if state == "idle":
            break
        time.sleep(1)
    try:
        if state != "idle":
            logs = "".join(f"\n{p.name}: {p.read_text()[-600:]}" for p in directory.glob("*.log"))
            pytest.skip(f"a test Slurm cluster could not start (node state {state!r}; "
                        f"{[d.stderr.strip() for d in daemons]}){logs}")
        yield env
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        for pid_file in directory.glob("*.pid"):
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass


@pytest.fixture(scope="module")
def conf(repo_root, tmp_path_factory):
    conf = tmp_path_factory.mktemp("conf") / "conf"
    write_tiny_conf(repo_root, conf)
    (conf / "prepare.yaml").write_text(yaml.safe_dump(CORPUS))
    distill = yaml.safe_load((conf / "distill.yaml").read_text())
    distill.update(log_every=1, max_steps=3)
    (conf / "distill.yaml").write_text(yaml.safe_dump(distill))
    resources = {"label": {"cpus": 1, "mem": "1G", "time": "0:20:00"},
                 "train": {"nodes": 1, "procs_per_node": 2, "cpus": min(2, os.cpu_count()), "mem": "2G"},
                 "decode": {"cpus": 1, "mem": "1G"}}
    (conf / "cmd.yaml").write_text(yaml.safe_dump({"slurm": resources}))
    return conf


def run(repo_root, conf, work, *options, env=None, wait=True):
    command = ["./run.sh", "--conf-dir", str(conf), "--work-dir", str(work), "--device", "cpu", "--nj", "2",
               "--metrics", "none", *options]
    if not wait:
        return subprocess.Popen(command, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    result = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    return result


def array_task_processes(job_name: str, task_id: str) -> list[int]:
    """This user's processes that run the given array task of the named Slurm job (found by their environment)."""
    wanted = {f"SLURM_JOB_NAME={job_name}".encode(), f"SLURM_ARRAY_TASK_ID={task_id}".encode()}
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = set(environ.read_bytes().split(b"\0"))
        except OSError:  # another user's process, or one that has just ended
            continue
        if wanted <= variables:
            pids.append(int(environ.parent.name))
    return pids


def records(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def losses(student: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(student / "tensorboard"))
    events.Reload()
    return [event.value for event in events.Scalars("train/loss")]


@pytest.fixture(scope="module")
def local(repo_root, conf, tmp_path_factory):
    """The reference: stages 0-4 with the local launcher, stage 5 as 2-process DDP under local torchrun."""
    work = tmp_path_factory.mktemp("local")
    run(repo_root, conf, work, "--stop-stage", "4")
    run(repo_root, conf, work, "--stage", "5", "--stop-stage", "5", "--ngpu", "2")
    return work


def copy_stage0(source: Path, work: Path) -> None:
    shutil.copytree(source / "data" / "mini_cs" / "manifests", work / "data" / "mini_cs" / "manifests")


def test_run_sh_cmd_slurm_gives_the_local_results(repo_root, conf, slurm, local, tmp_path):
    work = tmp_path / "slurm"
    copy_stage0(local, work)
    result = run(repo_root, conf, work, "--cmd", "slurm", "--stage", "1", "--stop-stage", "6", env=slurm)
    for job in ("pseudo_label", "validate", "cache_teacher", "distill_none", "decode"):
        assert (work / "exp" / "mini_cs" / "log" / job / "job.sh").is_file(), job  # each went through sbatch
    assert "--array 0-1" in result.stderr and "Slurm job" in result.stderr
    data, reference = work / "data" / "mini_cs", local / "data" / "mini_cs"
    segments = records(data / "pseudo" / "mini_cs_supervisions_train_unlabelled-pl.jsonl.gz")
    assert len({s["recording_id"] for s in segments}) == 6  # every recording labelled
    assert segments == records(reference / "pseudo" / "mini_cs_supervisions_train_unlabelled-pl.jsonl.gz")
    validated = "cuts/mini_cs_cuts_train_unlabelled-validated.jsonl.gz"
    assert len(records(data / validated)) > 0 and records(data / validated) == records(reference / validated)
    # stage 5: the same 2-process DDP job, under srun + torchrun: the same losses, step by step
    student = work / "exp" / "mini_cs" / "student_none"
    assert "of 2 (gloo)" in (work / "exp" / "mini_cs" / "log" / "distill_none" / "task-0.log").read_text()
    slurm_losses, local_losses = losses(student), losses(local / "exp" / "mini_cs" / "student_none")
    assert len(slurm_losses) == 3 and slurm_losses == pytest.approx(local_losses, rel=1e-4)
    # stage 6: one array task per model, test set and mode, each scored
    decodes = (work / "exp" / "mini_cs" / "log" / "decode" / "commands.txt").read_text().splitlines()
    assert len(decodes) == 3 * 2 * 2
    for model in ("teacher", "validator", "student_none"):
        for test_set in ("test_in", "test_ood", "test_in_short", "test_ood_short"):
            scores = yaml.safe_load((work / "exp" / "mini_cs" / model / f"decode_{test_set}" / "scores.yaml")
                                    .read_text())
            assert scores["mer"]["reference_length"] > 0


def test_a_cancelled_array_task_is_named_and_resumed_by_a_rerun(repo_root, conf, slurm, local, tmp_path):
    from lhotse import RecordingSet

    from k2d.progress import in_shard

    work = tmp_path / "killed"
    copy_stage0(local, work)
    recordings = RecordingSet.from_file(work / "data" / "mini_cs" / "manifests"
                                        / "mini_cs_recordings_train_unlabelled.jsonl.gz")
    in_task_1 = sum(in_shard(r.id, 1, 2) for r in recordings)  # shards go by a hash of the recording id
    assert in_task_1 >= 2, "task 1 needs two recordings to be killed part way"
    logs = work / "exp" / "mini_cs" / "log" / "pseudo_label"
    progress = (work / "data" / "mini_cs" / "pseudo" / ".progress" / "mini_cs_supervisions_train_unlabelled-pl"
                / "shard-00001-of-00002.jsonl")
    running = run(repo_root, conf, work, "--cmd", "slurm", "--stage", "1", "--stop-stage", "1", env=slurm,
                  wait=False)
    # freeze task 1 the moment its first recording is recorded: a fast machine labels the rest of the shard
    # between a poll and scancel (CI once saw all 3 done), and then nothing would be left to resume
    deadline, task_1_processes = time.time() + 600, []
    while not (progress.is_file() and progress.read_text().count("\n") >= 1) and time.time() < deadline:
        task_1_processes = array_task_processes("k2d-pseudo_label", "1") or task_1_processes
        time.sleep(0.005)
    for pid in task_1_processes + array_task_processes("k2d-pseudo_label", "1"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    assert progress.is_file(), "task 1 recorded nothing in time"
    tasks = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-n", "k2d-pseudo_label"], env=slurm,
                           capture_output=True, text=True).stdout.split()
    task_1 = [task for task in tasks if task.endswith("_1")]
    assert task_1, f"task 1 is not running any more: {tasks}"
    subprocess.run(["scancel", task_1[0]], env=slurm, check=True)
    _, stderr = running.communicate(timeout=600)
    assert running.returncode != 0
    assert "task 1 of 2 failed (no exit status: killed or cancelled)" in stderr and str(logs / "task-1.log") in stderr
    done_before = progress.read_text().count("\n")
    assert 1 <= done_before < in_task_1  # killed part way: some of its recordings done, not all

    rerun = run(repo_root, conf, work, "--cmd", "slurm", "--stage", "1", "--stop-stage", "1", env=slurm)
    assert "Slurm job" in rerun.stderr
    resumed = f"shard 1/2: {done_before} item(s) done before, {in_task_1 - done_before} to do"
    assert resumed in (logs / "task-1.log").read_text()
    segments = "pseudo/mini_cs_supervisions_train_unlabelled-pl.jsonl.gz"
    assert records(work / "data" / "mini_cs" / segments) == records(local / "data" / "mini_cs" / segments)
    assert progress.read_text().count("\n") == in_task_1  # nothing done twice
