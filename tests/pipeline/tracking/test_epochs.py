"""Per-epoch metrics: Keras's logs become MLflow metric names, one point per epoch."""

from __future__ import annotations

import pytest

from tests.pipeline.tracking.conftest import EPOCHS


def test_every_epoch_metric_has_one_point_per_epoch(finished):
    store, result, _ = finished
    client = store.client()
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time"):
        history = client.get_metric_history(result.run_id, name)
        assert sorted(point.step for point in history) == list(range(1, EPOCHS + 1)), name
    val_accuracy = [point.value for point in sorted(client.get_metric_history(result.run_id, "val_accuracy"),
                                                    key=lambda point: point.step)]
    assert val_accuracy == pytest.approx(result.history["val_accuracy"])


def test_epoch_logs_become_metric_names_with_nan_kept():
    from pipeline.tracking.epochs import epoch_metrics

    logs = {"loss": float("nan"), "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.4, "learning_rate": 1e-3,
            "epoch_time": 0.2, "note": "not a number"}
    metrics = epoch_metrics(logs)
    assert sorted(metrics) == ["epoch_time", "learning_rate", "train_accuracy", "train_loss", "val_accuracy",
                               "val_loss"]
    assert metrics["train_loss"] != metrics["train_loss"]  # NaN: the UI shows where a run diverged
