"""Worker processes for real: two local workers, a worker killed with SIGKILL, and Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from pipeline.worker_slots import WorkerSlot, plan_slots
from sweeps.heartbeat import RETRY_OF
from sweeps.mlflow_runs import RUN_ID_ATTR
from tests.sweeps.conftest import runs_of, study_of


def test_slots_split_cores_and_deal_gpus_round_robin():
    assert plan_slots(1, 16, ["0", "1"]) == [WorkerSlot(0, 0, 0)]
    assert plan_slots(3, 8, ["0", "1"]) == [
        WorkerSlot(0, 2, 1, "0"), WorkerSlot(1, 2, 1, "1"), WorkerSlot(2, 2, 1, "0")]
    assert plan_slots(4, 2, []) == [WorkerSlot(i, 1, 1) for i in range(4)]
    assert WorkerSlot(0, 2, 1).overrides(intra_set=0, inter_set=4) == ["device.intra_op_threads=2"]


def sweep_process(overrides: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sweeps.run", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_running_trial(overrides: list[str], process: subprocess.Popen, timeout: float = 180):
    """The first RUNNING trial once it has trained an epoch (its MLflow run id is stored by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            running = [t for t in study_of(overrides).trials
                       if t.state == TrialState.RUNNING and RUN_ID_ATTR in t.user_attrs]
        except KeyError:  # the study is not created yet
            running = []
        if running:
            return running[0]
        time.sleep(0.5)
    raise AssertionError("no trial started training")


@pytest.mark.slow
def test_two_workers_share_the_study(sweep_overrides):
    overrides = [*sweep_overrides, "sweep.n_trials=4", "sweep.n_workers=2", "sweep.pruner=none",
                 "sweep.timeout=1h"]  # the launcher's deadline travels to the spawned workers
    finished = subprocess.run([sys.executable, "-m", "sweeps.run", *overrides], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    study = study_of(overrides)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    _, parents, children = runs_of(overrides)
    assert len(parents) == 1 and sorted(children) == [0, 1, 2, 3]
    assert "Reproduce it: python -m pipeline.run" in finished.stdout


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_a_worker_killed_with_sigkill_has_its_trial_run_again_and_the_study_gets_all_its_trials(
    sweep_overrides, tmp_path, storage
):
    if storage == "sqlite":
        sweep_overrides = [o for o in sweep_overrides if not o.startswith("sweep.storage=")]
        sweep_overrides.append(f"sweep.storage=sqlite:///{tmp_path}/optuna.db")
    overrides = [*sweep_overrides, "sweep.n_trials=3", "sweep.pruner=none",
                 "sweep.heartbeat_interval=0.5", "sweep.grace_period=3"]
    process = sweep_process([*overrides, "trainer.epochs=200"])  # the first trial trains long enough to be killed
    killed = wait_for_running_trial(overrides, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    restarted = subprocess.run([sys.executable, "-m", "sweeps.run", *overrides], capture_output=True, text=True)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    study = study_of(overrides)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1 and len(states) == 4, \
        restarted.stdout[-3000:] + restarted.stderr[-3000:]
    assert study.trials[killed.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.user_attrs.get(RETRY_OF) == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    client, parents, children = runs_of(overrides)
    killed_run, retry_run = children[killed.number], children[retry.number]
    assert killed_run.info.run_id == killed.user_attrs[RUN_ID_ATTR]
    assert killed_run.info.status == "KILLED" and killed_run.data.tags["optuna.state"] == "FAIL"
    assert retry_run.info.run_id != killed_run.info.run_id and retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["optuna.retry_of"] == str(killed.number)
    assert retry_run.data.tags["mlflow.parentRunId"] == killed_run.data.tags["mlflow.parentRunId"] \
        == parents[0].info.run_id
    assert not [r for r in [*parents, *children.values()] if r.info.status == "RUNNING"]
    assert "Top 3 trials:" in restarted.stdout and f"(retry of {killed.number})" in restarted.stdout


@pytest.mark.slow
def test_ctrl_c_fails_the_running_trial_and_kills_the_parent_run(sweep_overrides):
    overrides = [*sweep_overrides, "sweep.n_trials=3", "sweep.pruner=none", "trainer.epochs=200"]
    process = sweep_process(overrides)
    interrupted = wait_for_running_trial(overrides, process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]
    assert "Traceback" not in output
    study = study_of(overrides)  # the storage is intact
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    _, parents, children = runs_of(overrides)
    assert parents[0].info.status == "KILLED"
    assert children[interrupted.number].info.status == "KILLED"
    assert children[interrupted.number].data.tags["optuna.state"] == "FAIL"


@pytest.mark.slow
def test_a_terminals_ctrl_c_reaches_two_workers_through_the_launcher_and_stops_both(sweep_overrides):
    overrides = [*sweep_overrides, "sweep.n_trials=4", "sweep.n_workers=2", "sweep.pruner=none", "trainer.epochs=200"]
    process = subprocess.Popen([sys.executable, "-m", "sweeps.run", *overrides], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    interrupted = wait_for_running_trial(overrides, process)
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C goes to every process of its foreground group
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 130, output[-2000:]
    assert "Traceback" not in output
    assert study_of(overrides).trials[interrupted.number].state == TrialState.FAIL
    _, parents, children = runs_of(overrides)
    assert parents[0].info.status == "KILLED" and children[interrupted.number].info.status == "KILLED"


def processes_naming(folder) -> list[str]:
    """The command lines of the live processes that name `folder` (a sweep's workers carry their overrides)."""
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # not a process, or one that just ended
            continue
        if str(folder) in cmdline and proc.name != str(os.getpid()):
            lines.append(cmdline)
    return lines


@pytest.mark.slow
def test_a_terminals_ctrl_c_while_the_workers_start_stops_them_all_quietly(sweep_overrides, tmp_path):
    overrides = [*sweep_overrides, "sweep.n_trials=4", "sweep.n_workers=2", "sweep.pruner=none", "trainer.epochs=200"]
    process = subprocess.Popen([sys.executable, "-m", "sweeps.run", *overrides], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("[sweep] MLflow parent run:"):  # the launcher starts its workers next
            break
    os.killpg(process.pid, signal.SIGINT)  # workers being spawned, or importing their modules
    output, _ = process.communicate(timeout=180)
    output = "".join(seen) + output
    assert process.returncode == 130, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    assert processes_naming(tmp_path) == []  # no worker left running the sweep on its own
    assert [t.state for t in study_of(overrides).trials if t.state == TrialState.RUNNING] == []
