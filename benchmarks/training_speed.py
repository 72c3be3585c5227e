"""Training throughput: bare `model.fit` vs the pipeline's `fit` and `custom` trainers, in one process.

    python benchmarks/training_speed.py [--rounds 3] [--epochs 4] [--samples 16000] [--model small_cnn] [key=value ...]

Each round trains the same model on the same data three ways, in rotating order. Throughput is measured
between the ends of the first and the last epoch (tracing and start-up excluded; the pipeline's own
callbacks, checkpoints included). Also times `python -m pipeline.run optimizer=does_not_exist`.
Extra key=value arguments are pipeline overrides (e.g. device=gpu) applied to all three.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from pipeline.config import PROJECT_ROOT, compose_config, validate
from pipeline.core import run_pipeline
from pipeline.data import load_data
from pipeline.device import place, seed_everything
from pipeline.model import build_model

SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "mnist-sample.npz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=16000, help="training images (the MNIST sample, tiled)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="small_cnn")
    args, overrides = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as scratch:
        data_path = enlarged_mnist(Path(scratch) / "mnist.npz", args.samples)
        common = [f"data=npz", f"data.path={data_path}", f"model={args.model}", "optimizer=adam",
                  f"trainer.epochs={args.epochs}", f"trainer.batch_size={args.batch_size}", "trainer.verbose=0",
                  "tracking=none", f"output_dir={scratch}/out", *overrides]
        train_size = len(load_data(validate(compose_config(common)).data).x_train)
        throughput: dict[str, list[float]] = {"bare model.fit": [], "pipeline fit": [], "pipeline custom": []}
        runners = {
            "bare model.fit": lambda: bare_fit(common),
            "pipeline fit": lambda: pipeline_fit([*common, "trainer=fit"]),
            "pipeline custom": lambda: pipeline_fit([*common, "trainer=custom"]),
        }
        names = list(runners)
        for round_ in range(args.rounds):
            for name in names[round_ % 3:] + names[:round_ % 3]:
                clock = runners[name]()
                throughput[name].append(train_size * (len(clock.ends) - 1) / (clock.ends[-1] - clock.ends[0]))
                print(f"round {round_ + 1} {name:<16} {throughput[name][-1]:>9,.0f} samples/s", flush=True)

    baseline = statistics.median(throughput["bare model.fit"])
    print(f"\nmedian over {args.rounds} rounds, {args.samples} images, model={args.model}, "
          f"batch {args.batch_size}, {' '.join(overrides) or 'default device'}:")
    for name, values in throughput.items():
        median = statistics.median(values)
        print(f"  {name:<16} {median:>9,.0f} samples/s   {median / baseline:.3f}x bare model.fit")
    print(f"\n`python -m pipeline.run optimizer=does_not_exist` to error: {time_to_error():.2f} s (median of 5)")


def enlarged_mnist(path: Path, samples: int) -> Path:
    with np.load(SAMPLE) as sample:
        repeats = -(-samples // len(sample["x_train"]))
        np.savez(path, x_train=np.tile(sample["x_train"], (repeats, 1, 1))[:samples],
                 y_train=np.tile(sample["y_train"], repeats)[:samples],
                 x_test=sample["x_test"], y_test=sample["y_test"])
    return path


class EpochClock(keras.callbacks.Callback):
    """Appended last, so each epoch's time includes every other callback."""

    def on_train_begin(self, logs=None):
        self.ends: list[float] = []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())


def bare_fit(overrides: list[str]) -> EpochClock:
    """What a notebook does: same model, data, device and seed, plain compile and fit on NumPy arrays."""
    settings = validate(compose_config(overrides))
    keras.backend.clear_session()
    placement = place(settings.device)
    seed_everything(settings.seed, settings.deterministic)
    data = load_data(settings.data)
    clock = EpochClock()
    with placement.scope():
        model = build_model(settings.model, data.input_shape, data.num_classes)
        model.compile(optimizer=keras.optimizers.Adam(settings.optimizer.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=settings.trainer.batch_size, epochs=settings.trainer.epochs,
              validation_data=(data.x_val, data.y_val), callbacks=[clock], verbose=0)
    return clock


def pipeline_fit(overrides: list[str]) -> EpochClock:
    clock = EpochClock()
    run_pipeline(compose_config(overrides), callbacks=[clock])
    return clock


def time_to_error() -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.run", "optimizer=does_not_exist"], cwd=PROJECT_ROOT,
                       capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    main()
