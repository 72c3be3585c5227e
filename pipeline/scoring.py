"""Test-set metrics for a trained model: loss, accuracy, macro and per-class F1."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from pipeline.data import Dataset


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    y_pred: np.ndarray


def evaluate_model(model, data: Dataset, batch_size: int = 512) -> Evaluation:
    """`model` is anything with Keras's `predict(x, batch_size=…, verbose=0)` returning class probabilities."""
    probabilities = np.asarray(model.predict(data.x_test, batch_size=batch_size, verbose=0), dtype=np.float64)
    y_pred = probabilities.argmax(axis=1).astype(np.int32)
    picked = probabilities[np.arange(len(data.y_test)), data.y_test]
    loss = float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())  # Keras's clipping of probabilities
    labels = list(range(data.num_classes))
    per_class = f1_score(data.y_test, y_pred, labels=labels, average=None, zero_division=0)
    metrics = {
        "test_loss": loss,
        "test_accuracy": float((y_pred == data.y_test).mean()),
        "test_f1_macro": float(per_class.mean()),
    }
    metrics.update({f"test_f1_{metric_safe(name)}": float(f1) for name, f1 in zip(data.class_names, per_class)})
    return Evaluation(metrics, y_pred)


def metric_safe(name: str) -> str:
    """Class names become metric-name suffixes: 'T-shirt/top' -> 'T-shirt_top'."""
    return re.sub(r"[^0-9A-Za-z_\-.]", "_", name)
