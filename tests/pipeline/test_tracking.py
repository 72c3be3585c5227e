"""A pipeline run recorded in a real MLflow SQLite store: params, per-epoch and test metrics, artifacts, model."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.errors import TrainingStopped
from tests.conftest import QUICK
from tests.mlflow_fixtures import new_store

EPOCHS = 2


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mlflow_template_db):
    """One tracked run shared by the tests that only read what it recorded."""
    from pipeline.core import RunOptions, run_pipeline

    folder = tmp_path_factory.mktemp("tracked")
    store = new_store(folder, mlflow_template_db)
    overrides = [*QUICK, f"trainer.epochs={EPOCHS}", store.override, f"output_dir={folder / 'out'}",
                 "tracking.register_as=digits-mlp"]
    result = run_pipeline(validate(compose_config(overrides)),
                          RunOptions(overrides=overrides, run_tags={"sweep": "none"}))
    return store, result, store.client().get_run(result.run_id)


def test_run_is_finished_with_a_readable_name_params_and_tags(finished):
    store, result, run = finished
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"mlp-adam-lr0.001-{result.run_id[:6]}"
    params = run.data.params
    assert params["optimizer.learning_rate"] == "0.001"
    assert params["model.hidden_units"] == str(result.settings.model.hidden_units)
    assert params["trainer.epochs"] == str(EPOCHS)
    assert params["trainer.steps_per_execution"] == "auto"
    assert "resume" not in params and "output_dir" not in params
    tags = run.data.tags
    assert "trainer.epochs=2" in tags["overrides"] and tags["trainer"] == "fit" and tags["data"] == "digits"
    assert tags["steps_per_execution"] == "13"  # auto, resolved: a small MLP gets the cap, one epoch (400 / 32)
    assert tags["devices"] and tags["tensorflow_version"] and tags["keras_version"] and tags["sweep"] == "none"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if head.returncode == 0:  # CI and developers run from a git checkout; an unpacked sdist has no commit to tag
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()


def test_every_epoch_metric_has_one_point_per_epoch(finished):
    store, result, _ = finished
    client = store.client()
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time"):
        history = client.get_metric_history(result.run_id, name)
        assert sorted(point.step for point in history) == list(range(1, EPOCHS + 1)), name
    val_accuracy = [point.value for point in sorted(client.get_metric_history(result.run_id, "val_accuracy"),
                                                    key=lambda point: point.step)]
    assert val_accuracy == pytest.approx(result.history["val_accuracy"])


def test_test_metrics_are_recorded_and_linked_to_the_model(finished):
    store, result, run = finished
    for name in ("test_loss", "test_accuracy", "test_f1_macro", "test_f1_0", "test_f1_9"):
        assert run.data.metrics[name] == pytest.approx(result.test_metrics[name])
    (output,) = run.outputs.model_outputs
    assert output.step == EPOCHS and output.model_id == result.model_id
    model = store.client().get_logged_model(output.model_id)
    assert {metric.key for metric in model.metrics} >= {"test_accuracy", "test_f1_macro"}


def test_artifacts_hold_config_checkpoints_plots_and_reports(finished):
    store, result, _ = finished
    root = store.root / "artifacts"
    files = {path.relative_to(root).parts[2:] for path in root.glob("*/artifacts/**/*") if path.is_file()}
    expected = {
        ("config", "config.yaml"), ("config", "overrides.yaml"),
        ("checkpoints", "best.keras"), ("checkpoints", "last.keras"), ("checkpoints", "state.json"),
        ("plots", "learning_curve.png"), ("plots", "confusion_matrix.png"),
        ("reports", "classification_report.txt"), ("reports", "model_summary.txt"),
    }
    assert expected <= files
    run_folder = next(root.glob(f"{result.run_id}/artifacts"))
    assert "macro avg" in (run_folder / "reports" / "classification_report.txt").read_text()
    assert "Total params" in (run_folder / "reports" / "model_summary.txt").read_text()
    assert (run_folder / "plots" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_dataset_lineage_has_the_three_splits(finished):
    _, _, run = finished
    contexts = {tag.value for dataset in run.inputs.dataset_inputs for tag in dataset.tags}
    assert contexts == {"train", "validation", "test"}
    assert {dataset.dataset.name for dataset in run.inputs.dataset_inputs} == {"digits-train", "digits-validation",
                                                                              "digits-test"}


def test_the_logged_model_loads_with_pyfunc_and_tensorflow_and_is_registered(finished):
    import mlflow.pyfunc
    import mlflow.tensorflow

    store, result, run = finished
    (output,) = run.outputs.model_outputs
    images = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    mlflow.set_tracking_uri(store.uri)
    try:
        for model_uri in (f"models:/{output.model_id}", "models:/digits-mlp/1"):
            assert np.asarray(mlflow.pyfunc.load_model(model_uri).predict(images)).shape == (3, 10)
        keras_model = mlflow.tensorflow.load_model(f"models:/{output.model_id}")
        assert keras_model.predict(images, verbose=0).shape == (3, 10)
    finally:
        mlflow.set_tracking_uri(None)
    (version,) = store.client().search_model_versions("name='digits-mlp'")
    assert version.run_id == result.run_id


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


def test_tracking_none_writes_no_mlflow_files(compose, tmp_path, monkeypatch):
    from pipeline.core import run_pipeline

    monkeypatch.chdir(tmp_path)
    project_store = sorted((PROJECT_ROOT / "mlruns").rglob("*"))
    result = run_pipeline(validate(compose("tracking=none", f"output_dir={tmp_path / 'out'}")))
    assert result.run_id is None
    assert sorted((PROJECT_ROOT / "mlruns").rglob("*")) == project_store
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    assert not any("mlruns" in str(path) or path.suffix == ".db" for path in tmp_path.rglob("*"))
