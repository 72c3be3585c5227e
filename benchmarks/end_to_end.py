"""A whole run against the script it replaces: the README's default job and the same job written in bare Keras.

    PYTHONPATH=. python benchmarks/end_to_end.py [--pairs 5]

Whole processes, start to exit: `python -m pipeline.run` (digits, MLP, Adam, 15 epochs, batch 32; tracking on, MLflow
into a temporary store, and `tracking=none`) and BARE_SCRIPT below, the job as a user writes it without the pipeline
(the same split of scikit-learn's digits, the same MLP, Adam, epochs and batch, NumPy arrays into `model.fit`, a
`ModelCheckpoint` of the best epoch, which is reloaded and tested). One warm-up round (it creates the store's tables
and fills the file cache) is not counted; then each round runs the three in an order that alternates round to round.
Prints the median ratio of each pipeline variant to the bare script of its round (wall time, and the CPU time of the
process, which other load on the machine changes less), the test accuracies, the time a config typo takes to fail,
and the load average while they ran (on 2 shared cores the wall times are upper bounds: rerun on a quiet machine).
Targets: <= 1.15x with tracking, <= 1.05x with tracking=none; the config error <= 1.5 s.
Last, MLFLOW_FLOOR: the CPU time a fresh process spends importing `mlflow` and opening the same store, which every
tracked run pays before it records anything (on a machine whose cores training keeps busy, no thread hides it).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from command_line import run, spread, timed_process

BARE_SCRIPT = '''
import sys

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

keras.utils.set_random_seed(42)
digits = load_digits()
x = (digits.images / 16).astype("float32")[..., None]
y = digits.target
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42, stratify=y)
x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.1, random_state=42, stratify=y_train)

model = keras.Sequential([
    keras.Input(shape=(8, 8, 1)),
    keras.layers.Flatten(),
    keras.layers.Dense(256, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(128, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
best = f"{sys.argv[1]}/best.keras"
model.fit(x_train, y_train, batch_size=32, epochs=15, validation_data=(x_val, y_val),
          callbacks=[keras.callbacks.ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True)])
loss, accuracy = keras.models.load_model(best).evaluate(x_test, y_test, verbose=0)
print(f"test_accuracy {accuracy:.4f}")
'''
MLFLOW_FLOOR = '''
import sys
import time

started = time.process_time()
import mlflow
imported = time.process_time()
mlflow.MlflowClient(sys.argv[1]).search_experiments(max_results=1)
print(f"mlflow_floor {imported - started:.3f} {time.process_time() - imported:.3f}")
'''
CONFIG_TYPO = "optimizer.learnin_rate=1"
BARE, TRACKED, UNTRACKED = "bare Keras script", "python -m pipeline.run", "python -m pipeline.run tracking=none"


def children_cpu_seconds() -> float:
    """User and system CPU time of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def mlflow_floor(script: Path, store: str) -> tuple[float, float]:
    """CPU seconds of a fresh process's `import mlflow`, and of its opening `store` (an existing SQLite store), as
    `script` (MLFLOW_FLOOR) times them."""
    _, result = timed_process([str(script), store])
    if result.returncode != 0:
        sys.exit(f"MLflow floor: exit {result.returncode}:\n{result.stderr[-2000:]}")
    imported, opened = re.findall(r"mlflow_floor ([0-9.]+) ([0-9.]+)", result.stdout)[-1]
    return float(imported), float(opened)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5, help="counted rounds, each a bare run and both pipeline runs")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder, "bare.py")
        script.write_text(BARE_SCRIPT)
        floor_script = Path(folder, "floor.py")
        floor_script.write_text(MLFLOW_FLOOR)
        commands = {
            BARE: lambda round_: [str(script), f"{folder}/bare-{round_}"],
            TRACKED: lambda round_: ["-m", "pipeline.run", f"tracking.uri=sqlite:///{folder}/mlruns/mlflow.db",
                                     f"hydra.run.dir={folder}/tracked-{round_}"],
            UNTRACKED: lambda round_: ["-m", "pipeline.run", "tracking=none", f"hydra.run.dir={folder}/none-{round_}"],
        }
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        cpu_seconds: dict[str, list[float]] = {name: [] for name in commands}
        accuracy: dict[str, set[str]] = {name: set() for name in commands}
        for round_ in range(args.pairs + 1):
            Path(folder, f"bare-{round_}").mkdir()
            order = list(commands) if round_ % 2 else list(reversed(commands))
            for name in order:
                cpu_before = children_cpu_seconds()
                elapsed, result = timed_process(commands[name](round_))
                cpu = children_cpu_seconds() - cpu_before
                if result.returncode != 0:
                    sys.exit(f"{name}: exit {result.returncode}:\n{result.stderr[-3000:]}")
                accuracy[name].add(re.findall(r"test_accuracy\s+([0-9.]+)", result.stdout)[-1])
                if round_:  # round 0 warms up
                    seconds[name].append(elapsed)
                    cpu_seconds[name].append(cpu)
            if round_:
                print(f"round {round_}: " + ", ".join(f"{name} {seconds[name][-1]:.2f} s" for name in order),
                      flush=True)
        floors = [mlflow_floor(floor_script, f"sqlite:///{folder}/mlruns/mlflow.db") for _ in range(args.pairs)]
    errors = []
    for _ in range(args.pairs):
        elapsed, result = run([CONFIG_TYPO])
        if result.returncode != 2:
            sys.exit(f"{CONFIG_TYPO}: exit {result.returncode}, expected 2:\n{result.stderr[-2000:]}")
        errors.append(elapsed)
    load_after = os.getloadavg()[0]

    print(f"\n{args.pairs} rounds, whole processes (median, range):")
    for name in commands:
        print(f"  {name:<38} {spread(seconds[name])}, CPU {spread(cpu_seconds[name])}; "
              f"test accuracy {', '.join(sorted(accuracy[name]))}")
    for name, target in ((TRACKED, 1.15), (UNTRACKED, 1.05)):
        ratios = [pipeline / bare for pipeline, bare in zip(seconds[name], seconds[BARE])]
        cpu_ratios = [pipeline / bare for pipeline, bare in zip(cpu_seconds[name], cpu_seconds[BARE])]
        print(f"  {name} / bare, median of the rounds' ratios: {statistics.median(ratios):.2f}x wall "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}; target <= {target}x), "
              f"{statistics.median(cpu_ratios):.2f}x CPU")
    print(f"  config error ({CONFIG_TYPO}): {spread(errors)} to the error (target <= 1.5 s); "
          f"{result.stderr.strip().splitlines()[-1][:100]}")
    imports, opens = zip(*floors)
    bare_cpu = statistics.median(cpu_seconds[BARE])
    print(f"  MLflow's floor, CPU of a fresh process: import mlflow {spread(list(imports))}, opening the store "
          f"{spread(list(opens))}; together {(statistics.median(imports) + statistics.median(opens)) / bare_cpu:.2f}"
          f" of the bare script's CPU time")
    print(f"load average (1 min) before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
