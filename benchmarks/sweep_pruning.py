"""Median pruning vs no pruning on the same 30-trial budget and seeds: epochs trained and best value.

Digits (400 training images), MLP [64], the pipeline's default 15 epochs, the default search space, TPE and
pruner settings, tracking=none (MLflow does not change what is pruned). Validation is 30% of the training pool
(431 images, 0.23 pp per image; the default 10% makes one image 0.69 pp, coarser than the 0.5 pp target).
Three seeds, so 6 sweeps of 30 trials in this one process.
Usage: python benchmarks/sweep_pruning.py [--trials 30] [--seeds 1 2 3] [key=value ...]
(extra overrides go to both sweeps, e.g. trainer.epochs=6 sweep.pruner_warmup_epochs=1)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import optuna  # noqa: E402

from sweeps.sweep import run_sweep  # noqa: E402

SETUP = ["data.max_train_samples=400", "data.val_fraction=0.3", "trainer.verbose=0", "model.hidden_units=[64]",
         "tracking=none"]


def sweep(pruner: str, seed: int, n_trials: int, folder: str, overrides: list[str]):
    started = time.perf_counter()
    summary = run_sweep([*SETUP, *overrides, f"sweep.n_trials={n_trials}", f"sweep.pruner={pruner}",
                         f"sweep.seed={seed}", f"sweep.storage={folder}/{pruner}-{seed}.log",
                         f"sweep.trials_dir={folder}/{pruner}-{seed}"])
    return summary, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args, overrides = parser.parse_known_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            pruned, pruned_s = sweep("median", seed, args.trials, folder, overrides)
            unpruned, unpruned_s = sweep("none", seed, args.trials, folder, overrides)
            rows.append((seed, pruned, unpruned, pruned_s, unpruned_s))
    print(f"\n{args.trials} trials per sweep, {' '.join(overrides) or 'default settings'}; median pruning vs none")
    print("seed  epochs(median/none)  fewer  best(median)  best(none)  diff(pp)  time s(median/none)")
    for seed, pruned, unpruned, pruned_s, unpruned_s in rows:
        fewer = 1 - pruned.epochs_trained / unpruned.epochs_trained
        diff = 100 * (pruned.best_value - unpruned.best_value)
        print(f"{seed:>4}  {pruned.epochs_trained:>7}/{unpruned.epochs_trained:<11} {fewer:>6.0%}  "
              f"{pruned.best_value:>12.4f}  {unpruned.best_value:>10.4f}  {diff:>+8.2f}  "
              f"{pruned_s:.0f}/{unpruned_s:.0f}")
    fewer_mean = sum(1 - p.epochs_trained / u.epochs_trained for _, p, u, _, _ in rows) / len(rows)
    diff_mean = sum(100 * (p.best_value - u.best_value) for _, p, u, _, _ in rows) / len(rows)
    print(f"mean: {fewer_mean:.0%} fewer epochs (target >= 40%), best value {diff_mean:+.2f} pp (target within 0.5 pp)")


if __name__ == "__main__":
    main()
