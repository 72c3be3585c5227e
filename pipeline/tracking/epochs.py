"""The per-epoch hook: an epoch's logs as the run's metrics, handed to a recorder that does not keep training waiting
(a tracked run's recording thread, pipeline.tracking.recording)."""

from __future__ import annotations

from typing import Any, Callable

import keras

from pipeline.config import EPOCH_STATS


def metric_name(log_key: str) -> str:
    """Keras's epoch-log keys as the run's metric names: loss -> train_loss, val_loss stays."""
    return log_key if log_key.startswith("val_") or log_key in EPOCH_STATS else f"train_{log_key}"


def epoch_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The scalar logs, renamed; a NaN loss is kept, so the UI shows where a run diverged."""
    return {metric_name(key): float(value) for key, value in logs.items() if _is_scalar(value)}


def _is_scalar(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


class EpochLogger(keras.callbacks.Callback):
    """Records an epoch's logs at step epoch + 1 (epochs counted from 1), so a resumed run continues the curve."""

    def __init__(self, record: Callable[[dict[str, float], int], None]):
        super().__init__()
        self.record = record

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.record(epoch_metrics(logs or {}), epoch + 1)
