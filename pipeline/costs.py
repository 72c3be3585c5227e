"""What a trained model costs: its parameters, the size of its saved file, its latency on one image, its training
time (`config.COST_METRICS`); measured for every run, after training, on the run's devices."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import keras

from pipeline.data import Dataset
from pipeline.inputs import split_images

LATENCY_CALLS = 5  # timed predictions at batch 1, after one untimed call that builds the predict function


def measure_costs(model: keras.Model, data: Dataset, train_seconds: float) -> dict[str, float]:
    return {
        "params": float(model.count_params()),
        "model_size_mb": saved_size_mb(model),
        "latency_ms": latency_ms(model, data),
        "train_seconds": train_seconds,
    }


def saved_size_mb(model: keras.Model) -> float:
    """The size of the model saved as a `.keras` file, as a user would ship it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.stat().st_size / 2**20


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
