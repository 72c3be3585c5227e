"""Sweep quality on a small budget: our TPE sweep against the baseline config, random search and Keras Tuner.

    PYTHONPATH=. python benchmarks/sweep_quality.py [--data ../shared/data/mnist-sample.npz] [--budgets 8 20]
                                       [--seeds 42 1 2] [--methods tpe random keras_tuner] [key=value ...]

On --data (mnist.npz layout), `model=small_cnn trainer.epochs=3`, the default search space (conf/sweep/default.yaml),
for each budget and sampler seed: the best val_accuracy of
  - baseline:    the command's own config alone (Adam 1e-3, dropout 0.2), one run;
  - tpe:         `python -m sweeps.run` as configured (baseline trial 0, startup sized to the budget, median pruning);
  - random:      the same sweep with `sweep.sampler=random` (the control: what the sampler adds);
  - tpe_startup5: TPE with 5 random starts (`sweep.startup_trials=5`, the n_trials/4 rule first tried at 20 trials);
  - tpe_no_baseline_startup10: TPE without the baseline trial and with Optuna's fixed 10 random startup trials
                 (close to the sweep before issue 9, which also modelled each parameter on its own);
  - keras_tuner: Keras Tuner's BayesianOptimization (its defaults) on the same space, network, data, split, seed
                 and batches, `val_accuracy` of the best epoch, no pruning (the `bench` extra installs it).
Printed per budget: best per seed, mean, worst, and epochs trained. Tracking is off (it does not change values).
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

import optuna  # noqa: E402

from pipeline.compose import validate  # noqa: E402
from pipeline.config import PROJECT_ROOT  # noqa: E402
from sweeps.settings import CategoricalParam, FloatParam, IntParam, Param, load  # noqa: E402
from sweeps.space import applies  # noqa: E402
from sweeps.sweep import run_sweep  # noqa: E402
from sweeps.trial_config import TrialConfigs  # noqa: E402

SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "mnist-sample.npz"
SETUP = ["model=small_cnn", "trainer.epochs=3", "trainer.verbose=0", "tracking=none"]
SWEEPS = {  # our methods: the overrides each adds
    "tpe": [],
    "random": ["sweep.sampler=random"],
    "tpe_startup5": ["sweep.startup_trials=5"],
    "tpe_no_baseline_startup10": ["sweep.baseline=false", "sweep.startup_trials=10"],  # close to before issue 9
}


def sweep_best(method: str, seed: int, budget: int, folder: str, overrides: list[str]) -> tuple[float, int]:
    name = f"{method}-{budget}-{seed}"
    summary = run_sweep([*overrides, *SWEEPS[method], f"sweep.n_trials={budget}", f"sweep.seed={seed}",
                         f"sweep.storage={folder}/{name}.log", f"sweep.trials_dir={folder}/{name}"])
    return float(summary.best_value or math.nan), summary.epochs_trained


def keras_tuner_best(seed: int, budget: int, folder: str, overrides: list[str]) -> tuple[float, int]:
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
    return float(best.score), len(tuner.oracle.trials) * pipeline.trainer.epochs  # no early stopping: all epochs


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
    parser.add_argument("--data", default=str(SAMPLE))
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=[*SWEEPS, "keras_tuner"], default=[*SWEEPS, "keras_tuner"])
    args, extra = parser.parse_known_args()
    overrides = [*SETUP, "data=npz", f"data.path={args.data}", *extra]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        baseline, _ = sweep_best("tpe", 0, 1, folder, [*overrides, "sweep.study_name=baseline"])
        print(f"\nbaseline (the command's own config, no sweep): val_accuracy {baseline:.4f}, "
              f"{' '.join(overrides)}", flush=True)
        for budget in args.budgets:
            rows = {}
            for method in args.methods:
                results = [
                    keras_tuner_best(seed, budget, folder, overrides) if method == "keras_tuner"
                    else sweep_best(method, seed, budget, folder, overrides)
                    for seed in args.seeds
                ]
                rows[method] = results
                print(f"[{budget} trials] {method}: " + " ".join(f"{v:.4f}" for v, _ in results), flush=True)
            print(f"\n{budget} trials, seeds {' '.join(map(str, args.seeds))}; baseline {baseline:.4f}")
            print("method        " + "  ".join(f"seed {s:>3}" for s in args.seeds) + "    mean   worst  epochs")
            for method, results in rows.items():
                values = [value for value, _ in results]
                epochs = "/".join(str(e) for _, e in results)
                print(f"{method:<12}  " + "  ".join(f"{v:8.4f}" for v in values)
                      + f"  {statistics.mean(values):.4f}  {min(values):.4f}  {epochs}", flush=True)


if __name__ == "__main__":
    main()
