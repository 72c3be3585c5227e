"""Test-set metrics for a trained model: loss, accuracy, macro and per-class F1."""

from __future__ import annotations

import re
from dataclasses import dataclass

import keras
import numpy as np
from sklearn.metrics import f1_score

from pipeline.data import Dataset
from pipeline.inputs import evaluation_batches
from pipeline.trainer import LOSS


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    y_pred: np.ndarray


def evaluate_model(model, data: Dataset, batch_size: int = 512) -> Evaluation:
    """`model` is anything with Keras's `predict(batches, verbose=0)` returning class probabilities; the loss is
    the one the trainers compile (`trainer.LOSS`)."""
    probabilities = np.asarray(model.predict(evaluation_batches(data, "test", batch_size), verbose=0))
    y_true = data.test.labels
    y_pred = probabilities.argmax(axis=1).astype(np.int32)
    loss = float(np.mean(keras.losses.get(LOSS)(y_true, probabilities)))
    labels = list(range(data.num_classes))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    metrics = {
        "test_loss": loss,
        "test_accuracy": float((y_pred == y_true).mean()),
        "test_f1_macro": float(per_class.mean()),
    }
    metrics.update({f"test_f1_{metric_safe(name)}": float(f1) for name, f1 in zip(data.class_names, per_class)})
    return Evaluation(metrics, y_pred)


def metric_safe(name: str) -> str:
    """Class names become metric-name suffixes: 'T-shirt/top' -> 'T-shirt_top'."""
    return re.sub(r"[^0-9A-Za-z_\-.]", "_", name)
