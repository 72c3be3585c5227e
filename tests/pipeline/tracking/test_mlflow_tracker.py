"""The MLflow run tracker: test metrics linked to the model, dataset lineage, checkpoints to fetch."""

from __future__ import annotations

import pytest

from pipeline.tracking import tracked_run
from pipeline.tracking.epochs import EpochLogger
from tests.pipeline.tracking.conftest import EPOCHS, settings_for


def test_test_metrics_are_recorded_and_linked_to_the_model(finished):
    store, result, run = finished
    for name in ("test_loss", "test_accuracy", "test_f1_macro", "test_f1_0", "test_f1_9"):
        assert run.data.metrics[name] == pytest.approx(result.test_metrics[name])
    (output,) = run.outputs.model_outputs
    assert output.step == EPOCHS and output.model_id == result.model_id
    model = store.client().get_logged_model(output.model_id)
    assert {metric.key for metric in model.metrics} >= {"test_accuracy", "test_f1_macro"}


def test_dataset_lineage_has_the_three_splits(finished):
    _, _, run = finished
    contexts = {tag.value for dataset in run.inputs.dataset_inputs for tag in dataset.tags}
    assert contexts == {"train", "validation", "test"}
    assert {dataset.dataset.name for dataset in run.inputs.dataset_inputs} == {"digits-train", "digits-validation",
                                                                              "digits-test"}


def test_a_run_without_checkpoints_has_none_to_fetch(mlflow_store, tmp_path):
    with tracked_run(settings_for(mlflow_store.override), overrides=[], output_dir=tmp_path) as tracker:
        assert tracker.fetch_checkpoints(tmp_path / "fetched") is False


def test_a_resumed_run_records_the_checkpointed_epochs_its_killed_process_had_not(mlflow_store, tmp_path):
    """Killed after epoch 3's checkpoint with only epoch 1's metrics written: the resumed run writes epochs 2 and 3
    from the checkpoint's history, and epoch 1 once."""
    with pytest.raises(KeyboardInterrupt):
        with tracked_run(settings_for(mlflow_store.override), overrides=[], output_dir=tmp_path) as killed:
            (logger,) = [callback for callback in killed.epoch_callbacks() if isinstance(callback, EpochLogger)]
            logger.on_epoch_end(0, {"loss": 0.9, "val_accuracy": 0.5})
            raise KeyboardInterrupt
    history = {"loss": [0.9, 0.7, 0.6], "val_accuracy": [0.5, 0.6, 0.8]}
    with tracked_run(settings_for(mlflow_store.override, f"resume={killed.run_id}"), overrides=[],
                     output_dir=tmp_path) as resumed:
        resumed.log_missing_epochs(history)
    client = mlflow_store.client()
    for name, values in (("train_loss", history["loss"]), ("val_accuracy", history["val_accuracy"])):
        points = sorted((point.step, point.value) for point in client.get_metric_history(killed.run_id, name))
        assert points == list(enumerate(values, 1)), name
