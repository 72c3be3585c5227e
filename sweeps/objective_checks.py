"""Checks of the objective settings that need no TensorFlow (the objective module imports it)."""

from __future__ import annotations

from pipeline.errors import PipelineError
from sweeps.settings import SweepSettings

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def is_epoch_metric(metric: str) -> bool:
    return metric in EPOCH_METRICS


def check_objective(settings: SweepSettings) -> None:
    metric = settings.objective.metric
    if not is_epoch_metric(metric) and not metric.startswith("test_"):
        raise PipelineError(
            f"sweep.objective.metric={metric}: unknown metric; choose {', '.join(EPOCH_METRICS)} or a test_* metric "
            "(test_accuracy, test_loss, test_f1_macro)"
        )
    if not is_epoch_metric(metric) and settings.pruner != "none":
        raise PipelineError(
            f"sweep.objective.metric={metric}: a test metric exists only after training, so it cannot prune; "
            f"set sweep.pruner=none or use one of {', '.join(EPOCH_METRICS)}"
        )
