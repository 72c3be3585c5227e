"""How a tracked run opens and ends: failed or killed with its checkpoints, parent runs, and resume, down to
Ctrl-C or SIGTERM mid-training and resume=<run id> continuing the same run; a run killed without a word (SIGKILL)
closed by the next start or at once by its resume, resume=last, and a live run left alone."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.compose import validate
from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError, TrainingStopped
from pipeline.tracking import tracked_run
from tests.pipeline.tracking.conftest import open_and_close, settings_for

EXTRA_EPOCHS = 2


class _RaiseAtSecondEpoch:
    """A callback factory: raises `error` at the end of epoch 2, after the checkpoints exist."""

    @staticmethod
    def make(error: BaseException):
        import keras

        class Raiser(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 1:
                    raise error

        return Raiser()


@pytest.mark.parametrize(
    "error, status, tag, value",
    [
        (RuntimeError("disk on fire"), "FAILED", "error", "RuntimeError: disk on fire"),
        (TrainingStopped("pruned at epoch 2"), "KILLED", "stopped", "pruned at epoch 2"),
    ],
)
def test_a_run_that_raises_ends_failed_or_killed_with_its_checkpoints(compose, mlflow_store, tmp_path,
                                                                      error, status, tag, value):
    from pipeline.core import RunOptions, run_pipeline

    overrides = ["trainer.epochs=3", mlflow_store.override, f"output_dir={tmp_path / 'out'}"]
    with pytest.raises(type(error)):
        run_pipeline(validate(compose(*overrides)),
                     RunOptions(overrides=overrides, callbacks=[_RaiseAtSecondEpoch.make(error)]))
    (run,) = mlflow_store.runs()
    assert run.info.status == status
    assert run.data.tags[tag] == value
    artifacts = {item.path for item in mlflow_store.client().list_artifacts(run.info.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/best.keras", "checkpoints/last.keras", "checkpoints/state.json"}


@pytest.mark.parametrize("interruption, status", [(KeyboardInterrupt(), "KILLED"), (SystemExit(1), "KILLED"),
                                                  (ValueError("bad\nthing"), "FAILED")])
def test_interrupted_or_failed_body_closes_the_run_and_reraises(mlflow_store, tmp_path, interruption, status):
    with pytest.raises(type(interruption)):
        with tracked_run(settings_for(mlflow_store.override), overrides=[], output_dir=tmp_path) as tracker:
            raise interruption
    run = mlflow_store.client().get_run(tracker.run_id)
    assert run.info.status == status
    if status == "FAILED":
        assert run.data.tags["error"] == "ValueError: bad thing"
        error_text = mlflow_store.client().download_artifacts(tracker.run_id, "error.txt", str(tmp_path))
        assert "Traceback" in Path(error_text).read_text()


def test_parent_run_and_extra_tags_are_recorded(mlflow_store, tmp_path):
    settings = settings_for(mlflow_store.override, "tracking.run_name=trial-7", "tracking.experiment=study")
    parent = open_and_close(settings, tmp_path)
    child = open_and_close(settings, tmp_path, parent_run_id=parent, tags={"trial": "7"})
    run = mlflow_store.client().get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["trial"] == "7"
    assert run.info.run_name == "trial-7"
    assert mlflow_store.client().get_experiment(run.info.experiment_id).name == "study"
    assert mlflow_store.client().get_experiment(run.info.experiment_id).artifact_location == (
        (mlflow_store.root / "artifacts").as_uri())


def test_more_params_and_tags_than_one_request_takes_are_all_logged_masked(mlflow_store):
    from pipeline.tracking.lifecycle import _log

    client = mlflow_store.client()
    run_id = client.create_run(client.create_experiment("batches")).info.run_id
    _log(client, run_id, params={f"p{number}": number for number in range(250)},
         tags={**{f"t{number}": "x" for number in range(150)}, "storage": "postgresql://user:secret@db/optuna"})
    data = client.get_run(run_id).data
    assert len(data.params) == 250 and {f"t{number}" for number in range(150)} <= data.tags.keys()
    assert data.tags["storage"] == "postgresql://user:***@db/optuna"


def test_resume_of_an_unknown_or_finished_run_is_refused_in_one_line(mlflow_store, tmp_path):
    finished = open_and_close(settings_for(mlflow_store.override), tmp_path)
    unknown = "0" * 32
    cases = [(unknown, rf"^resume={unknown}: no such run in sqlite:///"),
             (finished, rf"^resume={finished}: the run is FINISHED; only a KILLED or FAILED run can be resumed$")]
    for run_id, message in cases:
        with pytest.raises(PipelineError, match=message):
            open_and_close(settings_for(mlflow_store.override, f"resume={run_id}"), tmp_path)
    assert mlflow_store.client().get_run(finished).info.status == "FINISHED"


def test_resume_reopens_the_same_run_and_refuses_a_changed_config(mlflow_store, tmp_path):
    original = [mlflow_store.override, "optimizer.learning_rate=0.01"]
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(settings_for(*original), overrides=original, output_dir=tmp_path) as tracker:
            raise KeyboardInterrupt
    killed = tracker.run_id
    with pytest.raises(PipelineError, match=rf"^resume={killed}: optimizer\.learning_rate=0\.001 but the run has "
                                            r"optimizer\.learning_rate=0\.01; resume with the run's own overrides"):
        open_and_close(settings_for(mlflow_store.override, f"resume={killed}"), tmp_path)
    # More epochs and another device are allowed: that is what continuing a run is for.
    resumed = settings_for(*original, f"resume={killed}", "trainer.epochs=40", "device=cpu")
    assert open_and_close(resumed, tmp_path) == killed
    run = mlflow_store.client().get_run(killed)
    assert run.info.status == "FINISHED" and run.data.params["trainer.epochs"] == "15"
    assert run.data.tags["resume_overrides"] == ""


def start_run(*overrides: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "pipeline.run", "trainer.verbose=0", "data.max_train_samples=200", *overrides]
    return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def val_accuracy_steps(store, run_id: str) -> list[int]:
    return sorted(point.step for point in store.client().get_metric_history(run_id, "val_accuracy"))


def wait_for_epochs(store, process: subprocess.Popen, epochs: int, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        runs = store.runs()
        if runs and len(val_accuracy_steps(store, runs[0].info.run_id)) >= epochs:
            return runs[0].info.run_id
        time.sleep(0.3)
    raise AssertionError(f"no run reached {epochs} epochs in {timeout_s} s")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_kills_the_run_and_resume_continues_it(mlflow_store, tmp_path: Path, signum):
    # Several steps per call (7 an epoch here); the resumed run may pick another number (auto).
    first = start_run(mlflow_store.override, "trainer.epochs=500", "trainer.steps_per_execution=3",
                      f"output_dir={tmp_path / 'first'}")
    try:
        run_id = wait_for_epochs(mlflow_store, first, epochs=2)
        first.send_signal(signum)
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 130, stderr
    assert "3 steps per call" in stdout
    assert "interrupted" in stderr
    client = mlflow_store.client()
    assert client.get_run(run_id).info.status == "KILLED"
    state = json.loads(Path(client.download_artifacts(run_id, "checkpoints/state.json", str(tmp_path))).read_text())
    done = state["epochs_done"]
    assert done >= 2

    total = done + EXTRA_EPOCHS
    resumed = start_run(mlflow_store.override, f"resume={run_id}", f"trainer.epochs={total}",
                        f"output_dir={tmp_path / 'second'}")
    stdout, stderr = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, stderr
    assert f"epochs {done + 1}..{total}" in stdout
    assert len(mlflow_store.runs()) == 1
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = val_accuracy_steps(mlflow_store, run_id)
    assert steps == sorted(set(steps)) and steps[-1] == total  # no epoch logged twice, ends at the last one
    assert set(range(done + 1, total + 1)) <= set(steps)
    assert "test_accuracy" in run.data.metrics
    assert (tmp_path / "second" / "checkpoints" / "last.keras").exists()  # fetched from MLflow, then trained on


def _killed_by_hand(store, tmp_path: Path, *overrides: str, checkpoint: bool = True) -> str:
    """A run closed KILLED by Ctrl-C in-process, with (or without) a checkpoint folder to continue from."""
    folder = tmp_path / f"run-{len(store.runs())}"
    every = [store.override, *overrides]
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(settings_for(*every), overrides=every, output_dir=folder) as tracker:
            if checkpoint:
                (folder / "checkpoints").mkdir(parents=True)
                (folder / "checkpoints" / "state.json").write_text("{}")
            raise KeyboardInterrupt
    return tracker.run_id


def test_resume_last_picks_the_newest_killed_run_with_this_config_and_a_checkpoint(mlflow_store, tmp_path):
    from pipeline.tracking import end_parent_run, open_parent_run

    matching = _killed_by_hand(mlflow_store, tmp_path, "optimizer.learning_rate=0.01")
    _killed_by_hand(mlflow_store, tmp_path, "optimizer.learning_rate=0.02")  # newer, another config
    _killed_by_hand(mlflow_store, tmp_path, "optimizer.learning_rate=0.01", checkpoint=False)  # nothing to continue
    tracking = settings_for(mlflow_store.override).tracking
    parent = open_parent_run(tracking, name="multirun", tags={})  # newest, no config at all
    assert parent is not None
    end_parent_run(tracking, parent, "KILLED")
    resumed = open_and_close(settings_for(mlflow_store.override, "optimizer.learning_rate=0.01", "resume=last"),
                             tmp_path)
    assert resumed == matching
    assert mlflow_store.client().get_run(matching).info.status == "FINISHED"


def test_resume_last_with_nothing_to_resume_is_one_line_and_records_nothing(mlflow_store, tmp_path):
    _killed_by_hand(mlflow_store, tmp_path, "optimizer.learning_rate=0.02")
    with pytest.raises(PipelineError, match=r"^resume=last: no KILLED, FAILED or dead run of experiment kerastrack "
                                            r"has this config and a checkpoint; run it without resume"):
        open_and_close(settings_for(mlflow_store.override, "resume=last"), tmp_path)
    assert [run.info.status for run in mlflow_store.runs()] == ["KILLED"]


def _killed_after_an_epoch(store, folder: Path, *overrides: str) -> tuple[subprocess.Popen, str, int]:
    """A run SIGKILLed once its first checkpoint is on disk: its process, run id and epochs done."""
    process = start_run(store.override, "trainer.epochs=500", f"output_dir={folder}", *overrides)
    state = folder / "checkpoints" / "state.json"
    try:
        run_id = wait_for_epochs(store, process, epochs=1)
        deadline = time.monotonic() + 120
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert store.client().get_run(run_id).info.status == "RUNNING"  # nothing left to close it
    return process, run_id, json.loads(state.read_text())["epochs_done"]


def _continued_to_the_end(store, run_id: str, resumed: subprocess.Popen, done: int, total: int,
                          killed_reason: str) -> str:
    stdout, stderr = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, stderr
    assert f"epochs {done + 1}..{total}" in stdout
    run = store.client().get_run(run_id)
    assert run.info.status == "FINISHED" and len(store.runs()) == 1
    assert run.data.tags["killed_reason"].startswith(killed_reason)
    assert set(val_accuracy_steps(store, run_id)) == set(range(1, total + 1))  # every epoch, as uninterrupted
    return stdout


@pytest.mark.slow
def test_a_run_killed_without_a_word_is_closed_by_the_next_start_and_resume_last_continues_it(mlflow_store, tmp_path):
    stale_after = "tracking.stale_after=2s"
    _, run_id, done = _killed_after_an_epoch(mlflow_store, tmp_path / "first", stale_after)
    time.sleep(2.5)  # its heartbeat is stale now
    total = done + EXTRA_EPOCHS
    resumed = start_run(mlflow_store.override, stale_after, "resume=last", f"trainer.epochs={total}",
                        f"output_dir={tmp_path / 'second'}")
    stdout = _continued_to_the_end(mlflow_store, run_id, resumed, done, total, "no heartbeat since ")
    assert "tracking: closed 1 run(s) of experiment kerastrack KILLED" in stdout
    assert f"resume=last: continuing run {run_id}" in stdout


@pytest.mark.slow
def test_resume_of_a_run_killed_without_a_word_closes_it_at_once_and_continues_it(mlflow_store, tmp_path):
    _, run_id, done = _killed_after_an_epoch(mlflow_store, tmp_path / "first")  # a heartbeat fresh for minutes
    total = done + EXTRA_EPOCHS
    resumed = start_run(mlflow_store.override, f"resume={run_id}", f"trainer.epochs={total}",
                        f"output_dir={tmp_path / 'second'}")
    _continued_to_the_end(mlflow_store, run_id, resumed, done, total, "its process is gone (on ")


# Checkpoints inside an epoch: small batches, one step per call, a checkpoint every 5 steps.
INSIDE_EPOCHS = ["trainer.batch_size=4", "trainer.steps_per_execution=1", "trainer.checkpoint.every=5 steps"]


def _killed_inside_an_epoch(store, folder: Path, *overrides: str) -> tuple[str, dict]:
    """A run SIGKILLed once it has a checkpoint inside an epoch: its run id and the state it left."""
    process = start_run(store.override, "trainer.epochs=500", *INSIDE_EPOCHS, f"output_dir={folder}", *overrides)
    state_file = folder / "checkpoints" / "state.json"
    try:
        deadline = time.monotonic() + 180
        # The run opens as training begins, while it trains (pipeline.tracking.recording): a checkpoint and a run
        # with its config (what resume=last matches) must be there.
        while not (state_file.exists() and json.loads(state_file.read_text())["epoch_steps"]
                   and any(run.data.params for run in store.runs())):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
    finally:
        process.kill()
        process.communicate(timeout=60)
    state = json.loads(state_file.read_text())
    assert state["epoch_steps"] > 0, state  # the last checkpoint is inside an epoch
    (run,) = store.runs()
    assert run.info.status == "RUNNING"  # nothing left to close it
    return run.info.run_id, state


@pytest.mark.slow
@pytest.mark.parametrize("resume", ["id", "last"])
def test_a_run_killed_inside_an_epoch_is_continued_there_and_finishes_with_the_uninterrupted_runs_steps(
    mlflow_store, tmp_path, resume
):
    import keras

    from pipeline.data import load_data
    from pipeline.trainer import steps_in_epoch

    # resume=<id> sees at once that the process is gone (a heartbeat fresh for minutes); resume=last waits for it to go
    # stale, which the pre-flight sees.
    stale_after = "tracking.stale_after=2s" if resume == "last" else "tracking.stale_after=300s"
    run_id, state = _killed_inside_an_epoch(mlflow_store, tmp_path / "first", stale_after)
    done, total = state["epochs_done"], state["epochs_done"] + 2
    if resume == "last":
        time.sleep(2.5)  # its heartbeat is stale now
    which = run_id if resume == "id" else resume
    resumed = start_run(mlflow_store.override, stale_after, *INSIDE_EPOCHS, f"resume={which}",
                        f"trainer.epochs={total}", f"output_dir={tmp_path / 'second'}")
    killed_reason = "its process is gone (on " if resume == "id" else "no heartbeat since "
    stdout = _continued_to_the_end(mlflow_store, run_id, resumed, done, total, killed_reason)
    assert f"epoch {done + 1} from step {state['epoch_steps'] + 1}" in stdout
    settings = settings_for("data.max_train_samples=200", *INSIDE_EPOCHS)
    model = keras.saving.load_model(tmp_path / "second" / "checkpoints" / "last.keras")
    # Every step of every epoch once: the steps the killed process ran after its checkpoint were lost, not doubled.
    assert int(model.optimizer.iterations) == total * steps_in_epoch(load_data(settings.data), 4)


@pytest.mark.slow
def test_a_live_run_is_never_closed_by_another_start_and_its_resume_is_refused(mlflow_store, tmp_path):
    import socket

    stale_after = "tracking.stale_after=2s"
    live = start_run(mlflow_store.override, stale_after, "trainer.epochs=500", f"output_dir={tmp_path / 'live'}")
    try:
        run_id = wait_for_epochs(mlflow_store, live, epochs=1)
        time.sleep(2.5)  # longer than its stale_after: only its heartbeat keeps it alive
        other = start_run(mlflow_store.override, stale_after, f"resume={run_id}", "trainer.epochs=600",
                          f"output_dir={tmp_path / 'other'}")
        _, stderr = other.communicate(timeout=240)
        assert other.returncode == 2, stderr
        refusal = stderr.strip().splitlines()[-1]
        assert re.match(rf"error: resume={run_id}: the run is still running on {re.escape(socket.gethostname())} "
                        rf"\(pid {live.pid}\), last heartbeat \d+ s ago; stop it first", refusal), refusal
        assert mlflow_store.client().get_run(run_id).info.status == "RUNNING" and len(mlflow_store.runs()) == 1
    finally:
        live.send_signal(signal.SIGTERM)
        live.communicate(timeout=120)
    assert mlflow_store.client().get_run(run_id).info.status == "KILLED"  # by its own process, on SIGTERM
