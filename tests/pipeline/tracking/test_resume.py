"""Which run `resume` continues, found before TensorFlow loads: a resume that cannot work is one line, exit 2, and
nothing started (no run RUNNING, the store's runs as they were)."""

from __future__ import annotations

import pytest

from pipeline.config import RESUME_LAST
from pipeline.errors import PipelineError
from pipeline.tracking import tracked_run
from pipeline.tracking.resume import check_resumable, last_resumable, run_params
from tests.pipeline.data.conftest import run_cli_noting_tensorflow
from tests.pipeline.tracking.conftest import settings_for


def _killed_run(store, tmp_path, *overrides: str) -> str:
    """A run closed KILLED by Ctrl-C, with a checkpoint folder to continue from."""
    every = [store.override, *overrides]
    folder = tmp_path / f"run-{len(store.runs())}"
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(settings_for(*every), overrides=every, output_dir=folder) as tracker:
            (folder / "checkpoints").mkdir(parents=True)
            (folder / "checkpoints" / "state.json").write_text("{}")
            raise KeyboardInterrupt
    return tracker.run_id


@pytest.mark.parametrize("other_run", [False, True], ids=["empty-store", "another-config"])
def test_resume_last_with_nothing_to_resume_fails_in_one_line_before_tensorflow_loads(mlflow_store, tmp_path,
                                                                                       other_run):
    killed = [_killed_run(mlflow_store, tmp_path, "optimizer.learning_rate=0.02")] if other_run else []
    result = run_cli_noting_tensorflow("resume=last", mlflow_store.override, f"output_dir={tmp_path / 'out'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: resume=last: no KILLED, FAILED or dead run of experiment kerastrack has this config and a checkpoint; "
        "run it without resume, or give the run's own overrides"], result.stderr
    assert result.stdout.strip().endswith("tensorflow imported: False")
    assert [(run.info.run_id, run.info.status) for run in mlflow_store.runs()] == [(run_id, "KILLED")
                                                                                  for run_id in killed]


def test_resume_of_an_unknown_run_fails_in_one_line_before_tensorflow_loads(mlflow_store, tmp_path):
    result = run_cli_noting_tensorflow("resume=0123456789abcdef", mlflow_store.override,
                                       f"output_dir={tmp_path / 'out'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: resume=0123456789abcdef: no such run in {mlflow_store.uri}"]
    assert result.stdout.strip().endswith("tensorflow imported: False")
    assert mlflow_store.runs() == []


def test_the_pre_flight_finds_the_run_the_start_continues(mlflow_store, tmp_path):
    matching = _killed_run(mlflow_store, tmp_path, "optimizer.learning_rate=0.01")
    _killed_run(mlflow_store, tmp_path, "optimizer.learning_rate=0.02")  # newer, another config
    settings = settings_for(mlflow_store.override, "optimizer.learning_rate=0.01", f"resume={RESUME_LAST}")
    check_resumable(settings)  # raises nothing
    assert last_resumable(mlflow_store.client(), settings.tracking, run_params(settings)).info.run_id == matching
    with pytest.raises(PipelineError, match="^resume=last: no KILLED"):
        check_resumable(settings_for(mlflow_store.override, "optimizer.learning_rate=0.03", "resume=last"))
