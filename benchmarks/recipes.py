"""The tutorial presets against the tutorials' own code: bare Keras beside `experiment=<preset>`, in one process.

    python benchmarks/recipes.py [--data ../shared/data/mnist-sample.npz] [--seeds 1 2 3] [--preset NAME ...]

For each preset and seed, the tutorial's network is written out below in plain Keras (independently of
conf/model/) and trained as the tutorial does: NumPy arrays into `model.fit` (Keras shuffles them), with the
tutorial's settings, on the same train/validation/test split of --data as the pipeline, so that the bare side
shares nothing with the pipeline's input pipeline. (With 1,440 training images a recipe like tutorial 000's is
still in its steepest learning: a different batch order alone moves its accuracy by 5-10 points, so compare means
over many seeds.) Then the pipeline runs the preset (`run_pipeline`, what
`python -m pipeline.run experiment=<preset> data=npz data.path=<data>` calls) with tracking off. Printed: parameter
counts, test accuracy (mean of the seeds) and training throughput (samples/s over the epochs after the first, which
carries tracing; a 1-epoch recipe counts its one epoch). Targets: equal parameters, accuracy within 1 point,
throughput >= 0.97x bare.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
from keras import layers

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.core import run_pipeline
from pipeline.data import Dataset, load_data
from pipeline.inputs import split_images
from pipeline.memory import release_memory

SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "mnist-sample.npz"


def tutorial_000() -> keras.Model:  # seeds/000: Input((28, 28)) and Reshape there; the same weights
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(16, (3, 3), activation="relu"),
        layers.Conv2D(16, (3, 3), strides=(2, 2), activation="relu"),
        layers.Conv2D(16, (3, 3), strides=(2, 2), activation="relu"),
        layers.Conv2D(16, (3, 3), strides=(2, 2), activation="relu"),
        layers.Flatten(), layers.Dense(20, activation="relu"), layers.Dense(10, activation="softmax"),
    ])


def tutorial_001() -> keras.Model:
    inputs = layers.Input((28, 28, 1))
    net = inputs
    for filters in (32, 64):
        for _ in range(2):
            net = layers.Activation("relu")(layers.Conv2D(filters, (3, 3), padding="SAME")(net))
        net = layers.Dropout(0.25)(layers.MaxPooling2D(pool_size=(2, 2))(net))
    net = layers.Dropout(0.5)(layers.Activation("relu")(layers.Dense(512)(layers.Flatten()(net))))
    return keras.Model(inputs, layers.Activation("softmax")(layers.Dense(10)(net)), name="Basic_CNN")


def tutorial_002() -> keras.Model:
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dense(10, activation="softmax"),
    ])


def tutorial_003() -> keras.Model:
    inputs = keras.Input(shape=(28, 28, 1), name="digits")
    x = layers.Flatten()(inputs)  # the tutorial reshapes to 784 beforehand
    x = layers.Dense(64, activation="relu", name="dense_1")(x)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    return keras.Model(inputs, layers.Dense(10, activation="softmax", name="predictions")(x))


def tutorial_004(hidden: bool, dropout: float = 0.0) -> Callable[[], keras.Model]:
    def model_fn() -> keras.Model:  # the tutorial's model_fn(a_layer=None): logistic, or 100 relu units (+ dropout)
        extra = [layers.Dense(100, activation="relu", name="hidden")] if hidden else []
        extra += [layers.Dropout(dropout)] if dropout else []
        return keras.Sequential([keras.Input((28, 28, 1)), layers.Flatten(), *extra,
                                 layers.Dense(10, activation="softmax", name="output")], name="fashion")
    return model_fn


@dataclass(frozen=True)
class Recipe:
    network: Callable[[], keras.Model]
    optimizer: Callable[[], keras.optimizers.Optimizer]
    batch_size: int
    epochs: int
    pixel_scale: float = 1.0  # tutorial 000 trains on raw 0..255 pixels
    best_by_val_loss: bool = False  # tutorial 004: ModelCheckpoint(save_best_only=True), reloaded before evaluating


RECIPES = {
    "mnist_small_cnn_sgd": Recipe(tutorial_000, lambda: keras.optimizers.SGD(1e-2), 64, 3, pixel_scale=255.0),
    "mnist_small_cnn_tape_sgd": Recipe(tutorial_000, lambda: keras.optimizers.SGD(1e-2), 64, 3, pixel_scale=255.0),
    "mnist_basic_cnn_adam": Recipe(tutorial_001, keras.optimizers.Adam, 32, 1),
    "mnist_cnn_tape_adam": Recipe(tutorial_002, keras.optimizers.Adam, 32, 5),
    "mnist_custom_loop_sgd": Recipe(tutorial_003, lambda: keras.optimizers.SGD(learning_rate=1e-3), 64, 3),
    "fashion_logistic": Recipe(tutorial_004(hidden=False), keras.optimizers.RMSprop, 32, 5),
    "fashion_mlp_dropout": Recipe(tutorial_004(hidden=True, dropout=0.3), keras.optimizers.Adam, 32, 20,
                                  best_by_val_loss=True),
}


@dataclass(frozen=True)
class Outcome:
    parameters: int
    test_accuracy: float
    samples_per_s: float


class EpochClock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times = [*getattr(self, "times", []), time.perf_counter() - self.started]


def throughput(samples: int, epoch_times: list[float]) -> float:
    steady = epoch_times[1:] or epoch_times
    return samples / statistics.median(steady)


def bare_keras(recipe: Recipe, data: Dataset, seed: int, scratch: Path) -> Outcome:
    keras.utils.set_random_seed(seed)
    scale = recipe.pixel_scale
    model = recipe.network()
    model.compile(optimizer=recipe.optimizer(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    clock = EpochClock()
    callbacks: list[keras.callbacks.Callback] = [clock]
    best = scratch / f"best-model-{seed}.keras"
    if recipe.best_by_val_loss:
        callbacks.append(keras.callbacks.ModelCheckpoint(best, save_best_only=True))
    # NumPy arrays into model.fit, as the tutorials do: nothing of the pipeline's input pipeline on this side.
    x_train, x_val, x_test = (split_images(data, split) * scale for split in ("train", "validation", "test"))
    model.fit(x_train, data.train.labels, batch_size=recipe.batch_size, epochs=recipe.epochs,
              validation_data=(x_val, data.validation.labels), callbacks=callbacks, verbose=0)
    if recipe.best_by_val_loss:
        model = keras.models.load_model(best)
    _, accuracy = model.evaluate(x_test, data.test.labels, verbose=0)
    return Outcome(model.count_params(), float(accuracy), throughput(len(data.train), clock.times))


def pipeline(overrides: list[str]) -> Outcome:
    result = run_pipeline(validate(compose_config(overrides)))
    model = keras.models.load_model(result.output_dir / "checkpoints" / "last.keras")
    return Outcome(model.count_params(), result.test_metrics["test_accuracy"],
                   throughput(len(load_data(result.settings.data).train), result.history["epoch_time"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=SAMPLE, help="an .npz in Keras's mnist.npz layout")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="5 or more add the distributions")
    parser.add_argument("--preset", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for preset in args.preset:
            outcomes: dict[str, list[Outcome]] = {"bare": [], "pipeline": []}
            for seed in args.seeds:
                overrides = [f"experiment={preset}", "data=npz", f"data.path={args.data.resolve()}", f"seed={seed}",
                             "tracking=none", "trainer.verbose=0", f"output_dir={scratch}/{preset}-{seed}"]
                data = load_data(validate(compose_config(overrides)).data)
                for name in (("bare", "pipeline") if seed % 2 else ("pipeline", "bare")):  # alternate who goes first
                    release_memory()
                    outcome = (bare_keras(RECIPES[preset], data, seed, Path(scratch)) if name == "bare"
                               else pipeline(overrides))
                    outcomes[name].append(outcome)
                    print(f"{preset:<26} seed {seed} {name:<8} {outcome.parameters:>10,} parameters  "
                          f"test accuracy {outcome.test_accuracy:.4f}  {outcome.samples_per_s:>8,.0f} samples/s",
                          flush=True)
            rows.append((preset, outcomes))

    print("\n| preset | parameters (bare / pipeline) | test accuracy, mean of seeds (bare / pipeline / diff) "
          "| samples/s (bare / pipeline / ratio) |")
    print("|---|---|---|---|")
    for preset, outcomes in rows:
        bare, ours = outcomes["bare"], outcomes["pipeline"]
        accuracy = [statistics.mean(o.test_accuracy for o in side) for side in (bare, ours)]
        speed = [statistics.median(o.samples_per_s for o in side) for side in (bare, ours)]
        print(f"| `{preset}` | {bare[0].parameters:,} / {ours[0].parameters:,} | {accuracy[0]:.3f} / {accuracy[1]:.3f}"
              f" / {100 * (accuracy[1] - accuracy[0]):+.1f} pt | {speed[0]:,.0f} / {speed[1]:,.0f} / "
              f"{speed[1] / speed[0]:.2f}x |")
    if len(args.seeds) >= 5:
        distributions(rows)


def distributions(rows: list[tuple[str, dict[str, list[Outcome]]]]) -> None:
    """Over many seeds one run says little (raw-pixel SGD has a fat tail): the distributions, and a rank test of
    whether the pipeline's and bare Keras's accuracies could come from one distribution."""
    from scipy.stats import mannwhitneyu

    print("\n| preset | side | seeds | min | 25% | median | 75% | max | Mann-Whitney U p (two-sided) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset, outcomes in rows:
        accuracies = {side: sorted(o.test_accuracy for o in runs) for side, runs in outcomes.items()}
        p_value = mannwhitneyu(accuracies["bare"], accuracies["pipeline"], alternative="two-sided").pvalue
        for side, values in accuracies.items():
            lower, median, upper = statistics.quantiles(values, n=4)
            print(f"| `{preset}` | {side} | {len(values)} | {values[0]:.3f} | {lower:.3f} | {median:.3f} | "
                  f"{upper:.3f} | {values[-1]:.3f} | {p_value:.2f} |")


if __name__ == "__main__":
    main()
