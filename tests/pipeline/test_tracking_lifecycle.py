"""tracked_run on its own: the pre-flight checks, how a run ends, resume checks, parent runs, the store's URI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from pipeline.tracking import RunTracker, tracked_run, tracking_uri
from tests.ports import free_port


def settings_for(*overrides: str):
    return validate(compose_config(list(overrides)))


def open_and_close(settings, tmp_path: Path, **kwargs) -> str:
    with tracked_run(settings, overrides=[], output_dir=tmp_path / "out", **kwargs) as tracker:
        return tracker.run_id


def test_tracking_uri_is_absolute_and_none_without_tracking(tmp_path, monkeypatch):
    assert tracking_uri(settings_for().tracking) == f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    assert tracking_uri(settings_for("tracking.uri=sqlite:///runs/mlflow.db").tracking) == (
        f"sqlite:///{tmp_path.resolve() / 'runs' / 'mlflow.db'}")
    assert tracking_uri(settings_for("tracking=server", "tracking.uri=http://mlflow:5000").tracking) == (
        "http://mlflow:5000")
    assert tracking_uri(settings_for("tracking=none").tracking) is None


def test_tracking_none_yields_a_tracker_that_records_nothing(tmp_path):
    with tracked_run(settings_for("tracking=none"), overrides=[], output_dir=tmp_path) as tracker:
        assert type(tracker) is RunTracker and tracker.run_id is None
        assert tracker.epoch_callback() is None and tracker.fetch_checkpoints(tmp_path / "ckpt") is False
    assert list(tmp_path.iterdir()) == []


def test_store_that_cannot_be_created_is_one_line_before_any_run(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    settings = settings_for(f"tracking.uri=sqlite:///{blocker}/mlflow.db")
    with pytest.raises(PipelineError, match=r"^tracking\.uri=sqlite:///.*a_file/mlflow\.db: cannot create") as error:
        open_and_close(settings, tmp_path)
    assert "\n" not in str(error.value)


def test_unreachable_server_is_one_line_before_any_run(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PipelineError, match=rf"^tracking\.uri={uri}: MLflow server unreachable") as error:
        open_and_close(settings_for("tracking=server", f"tracking.uri={uri}"), tmp_path)
    assert "\n" not in str(error.value)


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


def test_a_run_without_checkpoints_has_none_to_fetch(mlflow_store, tmp_path):
    with tracked_run(settings_for(mlflow_store.override), overrides=[], output_dir=tmp_path) as tracker:
        assert tracker.fetch_checkpoints(tmp_path / "fetched") is False


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


def test_epoch_logs_become_metric_names_with_nan_kept():
    from pipeline.tracking.epochs import epoch_metrics

    logs = {"loss": float("nan"), "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.4, "learning_rate": 1e-3,
            "epoch_time": 0.2, "note": "not a number"}
    metrics = epoch_metrics(logs)
    assert sorted(metrics) == ["epoch_time", "learning_rate", "train_accuracy", "train_loss", "val_accuracy",
                               "val_loss"]
    assert metrics["train_loss"] != metrics["train_loss"]  # NaN: the UI shows where a run diverged


def test_git_commit_is_read_from_loose_packed_and_detached_heads(tmp_path):
    from pipeline.tracking.provenance import git_commit

    assert git_commit(tmp_path) is None
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert git_commit(tmp_path) is None  # no commit yet
    (git / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert git_commit(tmp_path) == "b" * 40
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_commit(tmp_path) == "a" * 40
    (git / "HEAD").write_text("c" * 40 + "\n")
    assert git_commit(tmp_path) == "c" * 40
