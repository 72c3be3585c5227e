"""What a trained model costs: its parameters, the size of its saved file, its latency on one image, its training
time (`config.COST_METRICS`); measured for every run, after training, on the run's devices."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import keras

from pipeline.data import Dataset
from pipeline.inputs import split_images

LATENCY_CALLS = 5  # timed predictions at batch 1, after one untimed call that builds the predict function


def measure_costs(model: keras.Model, data: Dataset, train_seconds: float, saved_model: Path) -> dict[str, float]:
    """`saved_model`: the run's last checkpoint, the model as Keras saves it (no second save is needed)."""
    return {
        "params": float(model.count_params()),
        "model_size_mb": saved_model.stat().st_size / 2**20,
        "latency_ms": latency_ms(model, data),
        "train_seconds": train_seconds,
    }


def latency_ms(model: keras.Model, data: Dataset) -> float:
    """The median time to predict one test image (batch 1), in milliseconds."""
    image = split_images(data, "test", 1)
    model.predict_on_batch(image)
    times = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        model.predict_on_batch(image)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)
