"""SIGTERM mid-training leaves a KILLED run with its checkpoints; resume=<run id> continues it in the same run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT

pytestmark = pytest.mark.slow
EXTRA_EPOCHS = 2


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


def test_sigterm_kills_the_run_and_resume_continues_it(mlflow_store, tmp_path: Path):
    # Several steps per call (7 an epoch here); the resumed run may pick another number (auto).
    first = start_run(mlflow_store.override, "trainer.epochs=500", "trainer.steps_per_execution=3",
                      f"output_dir={tmp_path / 'first'}")
    try:
        run_id = wait_for_epochs(mlflow_store, first, epochs=2)
        first.send_signal(signal.SIGTERM)
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
