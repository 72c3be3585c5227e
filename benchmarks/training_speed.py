"""Training throughput of the tutorials' networks: the pipeline's `fit` and `custom` trainers, one step per call
and `trainer.steps_per_execution=auto`, each against bare `model.fit` (default settings) in the same process, under
each `device.precision` asked for.

    python -m benchmarks.training_speed [--rounds 2] [--epochs 3] [--samples 8000]
                                        [--networks mlp small_cnn basic_cnn wide_cnn]
                                        [--precisions float32 mixed_bfloat16] [--jit] [key=value ...]

Each round trains every variant of a network, under every precision, on the same data (the MNIST sample, tiled to
--samples images) in rotating order. Throughput is measured between the ends of the first and the last epoch
(tracing, the auto probe and start-up excluded; the pipeline's own callbacks, checkpoints included). Ratios are
against bare `model.fit` under the first precision (float32); under the others, each cell adds in brackets the ratio
against the same variant under the first precision. `--jit` adds both trainers with `trainer.jit_compile=true` (XLA)
and prints XLA's ratio to the same trainer without it. Also times `python -m pipeline.run optimizer=does_not_exist`
and a missing data file (both fail before TensorFlow loads). Extra key=value arguments are pipeline overrides (e.g.
device=gpu) applied to every variant.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import keras
import numpy as np

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.core import RunOptions, run_pipeline
from pipeline.data import load_data
from pipeline.device import place, seed_everything
from pipeline.inputs import split_images
from pipeline.memory import release_memory
from pipeline.model import build_model

SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "mnist-sample.npz"
# The tutorials' networks and batch sizes: 004's final MLP (79,510 parameters), 000's small CNN (8,630), 001's CNN
# (1,676,266), 002's CNN (4,738,826).
NETWORKS = {
    "mlp": ["model=mlp", "model.hidden_units=[100]", "model.dropout=0.3", "trainer.batch_size=32"],
    "small_cnn": ["model=small_cnn", "trainer.batch_size=64"],
    "basic_cnn": ["model=basic_cnn", "trainer.batch_size=32"],
    "wide_cnn": ["model=wide_cnn", "trainer.batch_size=32"],
}
BARE = "bare model.fit"
VARIANTS = {
    "fit, 1 step/call": ["trainer=fit", "trainer.steps_per_execution=1"],
    "fit, auto": ["trainer=fit", "trainer.steps_per_execution=auto"],
    "custom, 1 step/call": ["trainer=custom", "trainer.steps_per_execution=1"],
    "custom, auto": ["trainer=custom", "trainer.steps_per_execution=auto"],
}
XLA_VARIANTS = {  # --jit: each against its variant without XLA
    "fit, auto, XLA": ("fit, auto", ["trainer=fit", "trainer.steps_per_execution=auto", "trainer.jit_compile=true"]),
    "custom, auto, XLA": ("custom, auto", ["trainer=custom", "trainer.steps_per_execution=auto",
                                           "trainer.jit_compile=true"]),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: the first epoch (tracing) is not timed")
    parser.add_argument("--samples", type=int, default=8000, help="training images (the MNIST sample, tiled)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"],
                        choices=["float32", "mixed_bfloat16", "mixed_float16"], help="the first is the baseline")
    parser.add_argument("--jit", action="store_true", help="add both trainers with XLA (trainer.jit_compile=true)")
    args, overrides = parser.parse_known_args()
    variants = dict(VARIANTS)
    if args.jit:
        variants.update({name: extra for name, (_, extra) in XLA_VARIANTS.items()})

    table = []
    with tempfile.TemporaryDirectory() as scratch:
        data_path = enlarged_mnist(Path(scratch) / "mnist.npz", args.samples)
        for network in args.networks:
            common = ["data=npz", f"data.path={data_path}", *NETWORKS[network], "optimizer=adam",
                      f"trainer.epochs={args.epochs}", "trainer.verbose=0", "tracking=none",
                      f"output_dir={scratch}/out", *overrides]
            train_size = len(load_data(validate(compose_config(common)).data).train)
            runners = {}
            for precision in args.precisions:
                precise = [*common, f"device.precision={precision}"]
                runners[(BARE, precision)] = partial(bare_fit, precise)
                runners.update({(name, precision): partial(pipeline_fit, [*precise, *extra])
                                for name, extra in variants.items()})
            throughput: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
            keys = list(runners)
            for round_ in range(args.rounds):
                shift = round_ % len(keys)
                for key in keys[shift:] + keys[:shift]:
                    clock = runners[key]()
                    release_memory()
                    throughput[key].append(train_size * (len(clock.ends) - 1) / (clock.ends[-1] - clock.ends[0]))
                    print(f"{network} round {round_ + 1} {key[1]:<15} {key[0]:<20} {throughput[key][-1]:>9,.0f} "
                          "samples/s", flush=True)
            table.append((network, {key: statistics.median(values) for key, values in throughput.items()}))

    baseline_precision = args.precisions[0]
    print(f"\nmedian of {args.rounds} rounds, {args.samples} images, {args.epochs} epochs, "
          f"{' '.join(overrides) or 'default device'}; ratios against bare model.fit under {baseline_precision} in "
          f"the same run (in brackets: against the same variant under {baseline_precision}):\n")
    print(f"| network | precision | bare `model.fit` | {' | '.join(variants)} |")
    print(f"|---|---|---|{'---|' * len(variants)}")
    for network, speeds in table:
        baseline = speeds[(BARE, baseline_precision)]
        for precision in args.precisions:
            cells = [f"{speeds[(BARE, precision)]:,.0f} samples/s"]
            cells += [f"{speeds[(name, precision)] / baseline:.2f}x" for name in variants]
            if precision != baseline_precision:
                cells = [f"{cell} ({speeds[(name, precision)] / speeds[(name, baseline_precision)]:.2f}x)"
                         for cell, name in zip(cells, [BARE, *variants])]
            print(f"| {network} | {precision} | {' | '.join(cells)} |")
    if args.jit:
        print("\nXLA (trainer.jit_compile=true) against the same trainer without it:\n")
        for network, speeds in table:
            for precision in args.precisions:
                ratios = [f"{name.split(',')[0]} {speeds[(name, precision)] / speeds[(plain, precision)]:.2f}x"
                          for name, (plain, _) in XLA_VARIANTS.items()]
                print(f"- {network}, {precision}: {', '.join(ratios)}")
    print(f"\n`python -m pipeline.run optimizer=does_not_exist` to the error: "
          f"{time_to_error('optimizer=does_not_exist'):.2f} s (median of 5)")
    print(f"`python -m pipeline.run data=npz data.path=/nonexistent.npz` to the error: "
          f"{time_to_error('data=npz', 'data.path=/nonexistent.npz'):.2f} s (median of 5)")


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
    """What a notebook does: same model, data, device and seed, plain compile (Keras's defaults: one step per call)
    and fit on NumPy arrays."""
    settings = validate(compose_config(overrides))
    placement = place(settings.device)
    seed_everything(settings.seed, settings.deterministic)
    data = load_data(settings.data)
    clock = EpochClock()
    with placement.scope():
        model = build_model(settings.model, data.input_shape, data.num_classes)
        model.compile(optimizer=keras.optimizers.Adam(settings.optimizer.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x_train, x_val = split_images(data, "train"), split_images(data, "validation")
    model.fit(x_train, data.train.labels, batch_size=settings.trainer.batch_size, epochs=settings.trainer.epochs,
              validation_data=(x_val, data.validation.labels), callbacks=[clock], verbose=0)
    return clock


def pipeline_fit(overrides: list[str]) -> EpochClock:
    clock = EpochClock()
    run_pipeline(validate(compose_config(overrides)), RunOptions(callbacks=[clock]))
    return clock


def time_to_error(*arguments: str) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.run", *arguments], cwd=PROJECT_ROOT, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


if __name__ == "__main__":
    main()
