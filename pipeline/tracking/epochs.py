"""The per-epoch hook: the epoch only queues its metrics; one background thread writes each epoch's batch.

Not MLflow's own async logging: its worker polls with a one-second timeout, which every run then waits
out at its end (~0.5 s on average).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Any

import keras
from mlflow import MlflowClient
from mlflow.entities import Metric

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


class MetricWriter:
    """Writes queued metric batches in order, one `log_batch` each, on a daemon thread."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id
        self._batches: queue.Queue[list[Metric] | None] = queue.Queue()
        self._failures: list[str] = []
        self._thread = threading.Thread(target=self._write, name="mlflow-epoch-metrics", daemon=True)
        self._thread.start()

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._batches.put([Metric(name, value, now, step) for name, value in metrics.items()])

    def close(self) -> None:
        """Write what is queued, then stop; a store that failed meanwhile is reported, not raised (training is done)."""
        self._batches.put(None)
        self._thread.join()
        if self._failures:
            print(f"warning: {len(self._failures)} epoch(s) of metrics not recorded in MLflow: {self._failures[0]}",
                  file=sys.stderr)

    def _write(self) -> None:
        while (batch := self._batches.get()) is not None:
            try:
                self.client.log_batch(self.run_id, metrics=batch)
            except Exception as error:  # noqa: BLE001 - a store hiccup must not stop training
                self._failures.append(" ".join(str(error).split())[:200])


class EpochLogger(keras.callbacks.Callback):
    """Records an epoch's logs at step epoch + 1 (epochs counted from 1), so a resumed run continues the curve."""

    def __init__(self, writer: MetricWriter):
        super().__init__()
        self.writer = writer

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.writer.log(epoch_metrics(logs or {}), step=epoch + 1)
