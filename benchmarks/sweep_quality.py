"""Sweep quality scored honestly: the test accuracy of the configuration each method picks, on data it was not tuned on.

    PYTHONPATH=. python benchmarks/sweep_quality.py [--data ../shared/data/mnist-train-22k.npz] [--budgets 8 20]
        [--seeds 42 1 2 3 4] [--train 6000] [--validation 600] [--methods tpe random gp tpe_cv3 keras_tuner]
        [k=v ...]

On --data (mnist.npz layout): --train training images and --validation validation images drawn from its training
images (seeded; the SAME validation split for every method), its own test images untouched; `model=small_cnn
trainer.epochs=3`, the default search space (conf/sweep/default.yaml). For each budget and sampler seed, each method
picks a configuration by validation accuracy, and that configuration is trained again (the pipeline, the same
data) and scored on the test images: the score is what the user gets, not the maximum of noisy validation values.
  - tpe:         `python -m sweeps.run` as configured (baseline trial 0, startup sized to the budget, median pruning);
  - random:      `sweep.sampler=random` (the control: what the sampler adds);
  - gp:          `sweep.sampler=gp` (Optuna's GPSampler; needs PyTorch, the `bench` extra);
  - tpe_startup10: TPE after Optuna's fixed 10 random trials (the startup rule's control; not run by default);
  - tpe_cv3:     TPE on 3-fold cross-validation of the train + validation images (`sweep.objective.folds=3`,
                 `sweep.pruner=wilcoxon`), then retrained on the common split;
  - keras_tuner: Keras Tuner's BayesianOptimization (its defaults) on the same space, network, split, seed and
                 batches, `val_accuracy` of the best epoch, no pruning (the `bench` extra installs it).
Printed per budget: the test accuracy per seed, mean, worst, and epochs trained while searching. Tracking is off.
Everything runs in this one process, one trial at a time; the machine's load changes the times, not the values.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from collections.abc import Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from pipeline.compose import validate  # noqa: E402
from pipeline.config import PROJECT_ROOT  # noqa: E402
from pipeline.core import run_pipeline  # noqa: E402
from sweeps.settings import CategoricalParam, FloatParam, IntParam, Param, load  # noqa: E402
from sweeps.space import applies  # noqa: E402
from sweeps.sweep import run_sweep  # noqa: E402
from sweeps.trial_config import Scalar, TrialConfigs  # noqa: E402

DATA = PROJECT_ROOT.parent / "shared" / "data" / "mnist-train-22k.npz"
SETUP = ["model=small_cnn", "trainer.epochs=3", "trainer.verbose=0", "tracking=none"]
SWEEPS = {  # our methods: the overrides each adds
    "tpe": [],
    "random": ["sweep.sampler=random"],
    "gp": ["sweep.sampler=gp"],
    "tpe_cv3": ["sweep.objective.folds=3", "sweep.pruner=wilcoxon"],
    "tpe_startup10": ["sweep.startup_trials=10"],
}


def test_accuracy(values: Mapping[str, Scalar], folder: str, overrides: list[str]) -> float:
    """The picked configuration trained again on the common split, scored on the test images."""
    configs = TrialConfigs([o for o in overrides if not o.startswith("sweep.")])
    cfg = configs.build(values)
    cfg.output_dir = f"{folder}/picked"
    return run_pipeline(validate(cfg)).test_metrics["test_accuracy"]


def sweep_pick(method: str, seed: int, budget: int, folder: str, overrides: list[str],
               train: int, validation: int) -> tuple[dict[str, Scalar], int]:
    name = f"{method}-{budget}-{seed}"
    # Cross-validation folds the same images the others train and validate on.
    folded = [f"data.max_train_samples={train + validation}"] if "sweep.objective.folds=3" in SWEEPS[method] else []
    summary = run_sweep([*overrides, *folded, *SWEEPS[method], f"sweep.n_trials={budget}", f"sweep.seed={seed}",
                         f"sweep.storage={folder}/{name}.log", f"sweep.trials_dir={folder}/{name}"])
    return summary.best_values, summary.epochs_trained


def keras_tuner_pick(seed: int, budget: int, folder: str, overrides: list[str]) -> tuple[dict[str, Scalar], int]:
    """BayesianOptimization over the sweep's own space; each model built, compiled and fed as the pipeline does."""
    import keras
    import keras_tuner

    from pipeline.data import load_data
    from pipeline.device import seed_everything
    from pipeline.inputs import evaluation_batches, training_batches
    from pipeline.model import build_model
    from pipeline.optimizer import build_optimizer

    pipeline, sweep = load(overrides)
    configs = TrialConfigs([o for o in overrides if not o.startswith("sweep.")])
    data = load_data(pipeline.data)
    train = training_batches(data, pipeline.trainer.batch_size, pipeline.seed)
    validation = evaluation_batches(data, "validation", pipeline.trainer.batch_size)
    steps = math.ceil(len(data.train) / pipeline.trainer.batch_size)

    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        settings = validate(configs.build(hyperparameters(hp, sweep.params)))
        seed_everything(settings.seed, settings.deterministic)  # the same initial weights as the pipeline's run
        model = build_model(settings.model, data.input_shape, data.num_classes)
        model.compile(optimizer=build_optimizer(settings.optimizer, steps, settings.trainer.epochs),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.BayesianOptimization(
        build, objective="val_accuracy", max_trials=budget, seed=seed, directory=folder,
        project_name=f"keras-tuner-{budget}-{seed}", overwrite=True,
    )
    tuner.search(train, validation_data=validation, epochs=pipeline.trainer.epochs, verbose=0)
    best = tuner.oracle.get_best_trials(1)[0]
    picked = hyperparameters(best.hyperparameters, sweep.params)
    return picked, len(tuner.oracle.trials) * pipeline.trainer.epochs  # no early stopping: all epochs


def hyperparameters(hp, params: Mapping[str, Param]) -> dict:
    """The sweep's space in Keras Tuner's terms: conditional parameters inside conditional scopes."""
    values: dict = {}
    for param in sorted(params.values(), key=lambda p: p.when is not None):
        if param.when:
            (parent, allowed), = param.when.items()
            with hp.conditional_scope(parent, allowed if isinstance(allowed, list) else [allowed]):
                value = _choose(hp, param)
        else:
            value = _choose(hp, param)
        if applies(param, values):
            values[param.key] = value.item() if hasattr(value, "item") else value  # numpy scalars once it models
    return values


def _choose(hp, param: Param):
    if isinstance(param, CategoricalParam):
        return hp.Choice(param.key, param.choices)
    sampling = "log" if param.log else "linear"
    if isinstance(param, IntParam):
        return hp.Int(param.key, param.low, param.high, step=param.step, sampling=sampling)
    assert isinstance(param, FloatParam)
    return hp.Float(param.key, param.low, param.high, step=param.step, sampling=sampling)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--validation", type=int, default=600)
    parser.add_argument("--methods", nargs="+", choices=[*SWEEPS, "keras_tuner"],
                        default=[method for method in SWEEPS if method != "tpe_startup10"] + ["keras_tuner"])
    args, extra = parser.parse_known_args()
    pool = len(np.load(args.data)["y_train"])
    split = [f"data.val_fraction={(args.validation - 0.5) / pool}", f"data.max_train_samples={args.train}"]
    overrides = [*SETUP, "data=npz", f"data.path={args.data}", *split, *extra]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        for budget in args.budgets:
            rows = {}
            for method in args.methods:
                results = []
                for seed in args.seeds:
                    picked, epochs = keras_tuner_pick(seed, budget, folder, overrides) if method == "keras_tuner" \
                        else sweep_pick(method, seed, budget, folder, overrides, args.train, args.validation)
                    results.append((test_accuracy(picked, folder, overrides), epochs))
                rows[method] = results
                print(f"[{budget} trials] {method}: " + " ".join(f"{v:.4f}" for v, _ in results), flush=True)
            print(f"\n{budget} trials, seeds {' '.join(map(str, args.seeds))}: test accuracy of the picked "
                  f"configuration ({args.train} training, {args.validation} validation images)")
            print("method        " + "  ".join(f"seed {s:>3}" for s in args.seeds) + "    mean   worst  epochs")
            for method, results in rows.items():
                values = [value for value, _ in results]
                epochs = "/".join(str(e) for _, e in results)
                print(f"{method:<12}  " + "  ".join(f"{v:8.4f}" for v in values)
                      + f"  {statistics.mean(values):.4f}  {min(values):.4f}  {epochs}", flush=True)


if __name__ == "__main__":
    main()
