"""Trials per minute with sweep.n_workers=2 vs 1 on this machine (each worker's TensorFlow pinned to its cores).

Digits (400 training images), MLP [64], 4 epochs, 12 trials, no pruning, MLflow into a temporary SQLite
store; the time includes starting the worker processes (TensorFlow imported once per worker).
Usage: python benchmarks/sweep_workers.py [n_trials]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

N_TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
SETUP = ["data.max_train_samples=400", "trainer.epochs=4", "trainer.verbose=0", "model.hidden_units=[64]",
         "sweep.pruner=none", f"sweep.n_trials={N_TRIALS}"]


def trials_per_minute(n_workers: int, folder: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sweeps.run", *SETUP, f"sweep.n_workers={n_workers}",
         f"sweep.storage={folder}/w{n_workers}.log", f"sweep.trials_dir={folder}/w{n_workers}",
         f"tracking.uri=sqlite:///{folder}/w{n_workers}/mlflow.db"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return N_TRIALS / ((time.perf_counter() - started) / 60)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        one = trials_per_minute(1, folder)
        two = trials_per_minute(2, folder)
    print(f"cores: {os.cpu_count()}; {N_TRIALS} trials")
    print(f"n_workers=1: {one:.1f} trials/min; n_workers=2: {two:.1f} trials/min; ratio {two / one:.2f}")


if __name__ == "__main__":
    main()
