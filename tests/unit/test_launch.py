"""k2d.launch: local array tasks, the Slurm batch script and sbatch line, cmd.yaml, failed tasks named."""

import os
import subprocess

import pytest

from k2d import launch


def test_local_tasks_get_their_index_and_a_failed_task_is_named_with_its_log(tmp_path, capsys):
    logs = tmp_path / "logs"
    code = launch.main(["--tasks", "3", "--nj", "2", "--log-dir", str(logs), "--", "bash", "-c",
                        'echo "task $0 of $1"; exit $(( $0 == 1 ? 7 : 0 ))', "{task}", "{tasks}"])
    assert code == 1
    assert [(logs / f"task-{i}.log").read_text() for i in range(3)] == [f"task {i} of 3\n" for i in range(3)]
    assert [(logs / f"task-{i}.status").read_text() for i in range(3)] == ["0\n", "7\n", "0\n"]
    err = capsys.readouterr().err
    assert "task 1 of 3 failed (exit status 7)" in err and str(logs / "task-1.log") in err
    assert "task 0 of 3 failed" not in err


def test_a_commands_file_runs_a_task_per_line_and_a_rerun_clears_old_statuses(tmp_path):
    commands = tmp_path / "jobs.txt"
    commands.write_text("echo 'first line' > out-0.txt\n\necho second > 'out 1.txt'\n")
    logs = tmp_path / "logs"
    (logs).mkdir()
    (logs / "task-1.status").write_text("9\n")  # from an earlier run
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert launch.main(["--commands", str(commands), "--nj", "2", "--log-dir", str(logs)]) == 0
    finally:
        os.chdir(old)
    assert (tmp_path / "out-0.txt").read_text() == "first line\n" and (tmp_path / "out 1.txt").read_text() == "second\n"
    assert not (logs / "task-2.status").exists()  # the empty line is no task


def test_a_task_without_status_was_killed(tmp_path):
    (tmp_path / "task-0.status").write_text("0\n")
    assert launch.failed_tasks(tmp_path, 2) == [(1, "no exit status: killed or cancelled")]


def test_the_array_script_runs_the_task_of_slurm_array_task_id(tmp_path):
    script = launch.slurm_script(["bash", "-c", 'echo "[$0] [$1]"', "a b {task}", "{task}"], tmp_path, None)
    (tmp_path / "job.sh").write_text(script)
    out = subprocess.run(["bash", str(tmp_path / "job.sh")], env={**os.environ, "SLURM_ARRAY_TASK_ID": "4"},
                         capture_output=True, text=True)
    assert out.stdout == "[a b 4] [4]\n"
    assert (tmp_path / "task-4.status").read_text() == "0\n"


def test_sbatch_line_from_resources(tmp_path):
    resources = {"gpus": 1, "cpus": 8, "mem": "32G", "time": "4:00:00", "partition": "gpu", "max_running": 16,
                 "sbatch_options": ["--account=speech"]}
    assert launch.sbatch_command(64, tmp_path / "pseudo_label", resources, None) == [
        "sbatch", "--wait", "--parsable", "--job-name", "k2d-pseudo_label", "--array", "0-63%16",
        "--output", str(tmp_path / "pseudo_label" / "task-%a.log"), "--gres=gpu:1", "--cpus-per-task=8",
        "--mem=32G", "--time=4:00:00", "--partition=gpu", "--account=speech"]
    torchrun = launch.sbatch_command(1, tmp_path / "distill", {"gpus": 8}, {"nodes": 2, "procs_per_node": 8})
    assert torchrun[5:9] == ["--nodes", "2", "--output", str(tmp_path / "distill" / "task-0.log")]
    assert torchrun[-1] == "--gpus-per-node=8"


def test_cmd_yaml_gives_the_resources_of_a_kind_and_names_unknown_keys(tmp_path):
    path = tmp_path / "cmd.yaml"
    path.write_text("slurm:\n  partition: gpu\n  label: {gpus: 1, mem: 16G, time: ''}\n  decode: {gpus: 2}\n")
    assert launch.read_cmd_config(path, "label") == {"partition": "gpu", "gpus": 1, "mem": "16G"}
    path.write_text("slurm:\n  label: {gpu: 1}\n")
    with pytest.raises(ValueError, match=r"cmd.yaml: unknown key\(s\) under slurm: label.gpu"):
        launch.read_cmd_config(path, "label")


def test_the_shipped_cmd_yaml_files_are_valid(repo_root):
    paths = sorted(repo_root.glob("egs/*/conf/cmd.yaml"))
    assert paths, "no recipe ships a cmd.yaml"
    for path in paths:
        resources = {kind: launch.read_cmd_config(path, kind) for kind in launch.KINDS}
        for kind, given in resources.items():
            assert set(given) <= set(launch.RESOURCES + launch.CLUSTER), (path, kind, given)
        assert any(resources.values()), f"{path} gives no kind any resource"


def test_run_sh_rejects_an_unknown_cmd(repo_root):
    out = subprocess.run(["./run.sh", "--cmd", "sge"], cwd=repo_root, capture_output=True, text=True)
    assert out.returncode == 1 and "--cmd must be local or slurm, got 'sge'" in out.stderr


def test_check_config_names_a_bad_cmd_yaml_before_any_stage(repo_root, tmp_path):
    import shutil

    from k2d.check_config import check_conf_dir

    conf = tmp_path / "conf"
    shutil.copytree(repo_root / "egs" / "mini_cs" / "conf", conf)
    assert check_conf_dir(conf, "mini_cs") == []
    (conf / "cmd.yaml").write_text("slurm:\n  train: {node: 2}\n")
    assert check_conf_dir(conf, "mini_cs") == [f"{conf / 'cmd.yaml'}: unknown key(s) under slurm: train.node "
                                                "(kinds: label, train, decode; resources: gpus, cpus, mem, time, "
                                                "nodes, procs_per_node, partition, max_running, sbatch_options)"]


def test_sigterm_to_the_local_launcher_stops_its_tasks(tmp_path):
    # issue 29 case 7: the launcher exited silently and its tasks kept running, orphaned
    import signal
    import sys
    import time

    pids = tmp_path / "pids"
    pids.mkdir()
    task = (f"import os, time; open(os.path.join({str(pids)!r}, str(os.getpid())), 'w').close(); "
            "time.sleep(120)")
    launcher = subprocess.Popen([sys.executable, "-m", "k2d.launch", "--backend", "local", "--tasks", "3", "--nj", "2",
                                 "--log-dir", str(tmp_path / "log"), "--", sys.executable, "-c", task],
                                stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(list(pids.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.1)
    started = [int(p.name) for p in pids.iterdir()]
    assert len(started) == 2
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signal.SIGTERM
    assert "SIGTERM: stopped 2 running task(s); 1 not started" in err
    for pid in started:  # the tasks are gone, not orphaned
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive
    assert len(list(pids.iterdir())) == 2  # the third task never started
