"""The command line as a user meets it: how long bad input takes to fail, and the README's first command.

    PYTHONPATH=. python benchmarks/command_line.py [--rounds 5]

Wall time of whole `python -m pipeline.run` processes, from start to exit: a config error, a multirun whose last job
has a bad value (every job is checked before the first starts), bad data (checked before TensorFlow loads), each
expected to exit 2; then the default run (digits, MLP, Adam; `python -m pipeline.run`, MLflow into a temporary
store) with its test accuracy and training time as it prints them. Median and range over the rounds, and the load
average while they ran (the figures are upper bounds on a shared machine). Targets: each error <= 1.5 s; the default
run >= 0.95 test accuracy and < 1 min.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ERRORS = {
    "config error (optimizer=does_not_exist)": ["optimizer=does_not_exist"],
    "multirun, bad value in the last of 3 jobs": ["-m", "optimizer.learning_rate=0.1,0.01,-1"],
    "bad data (data=npz data.path=/nonexistent.npz)": ["data=npz", "data.path=/nonexistent.npz"],
}


def run(arguments: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """`python -m pipeline.run <arguments>` as a whole process: its wall time and its output."""
    return timed_process(["-m", "pipeline.run", *arguments])


def timed_process(arguments: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """`python <arguments>` from start to exit, TensorFlow's start-up log silenced."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - started, result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (range {min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    for label, arguments in ERRORS.items():
        times = []
        for _ in range(args.rounds):
            seconds, result = run(arguments)
            if result.returncode != 2:
                sys.exit(f"{label}: exit {result.returncode}, expected 2:\n{result.stderr[-2000:]}")
            times.append(seconds)
        print(f"{label}: {spread(times)} to the error; {result.stderr.strip().splitlines()[-1][:100]}")
    with tempfile.TemporaryDirectory() as folder:
        times, accuracies, training = [], [], []
        for round_ in range(min(args.rounds, 3)):
            seconds, result = run([f"tracking.uri=sqlite:///{folder}/mlflow.db", f"hydra.run.dir={folder}/{round_}"])
            if result.returncode != 0:
                sys.exit(f"default run: exit {result.returncode}:\n{result.stderr[-2000:]}")
            times.append(seconds)
            accuracies.append(float(re.search(r"test_accuracy\s+([0-9.]+)", result.stdout).group(1)))
            training.append(float(re.search(r"Test metrics \(([0-9.]+) s", result.stdout).group(1)))
        # The first round also creates the store's tables, as a fresh clone's first run does.
        print(f"default run (python -m pipeline.run): {spread(times)} for the whole command; training and testing "
              f"{spread(training)}; test accuracy {', '.join(f'{a:.3f}' for a in accuracies)}")
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) before / after: {load_before:.1f} / {load_after:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
