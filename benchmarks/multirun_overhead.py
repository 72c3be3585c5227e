"""What a multirun costs beyond its jobs: `python -m pipeline.run -m seed=1,2,3,4` vs one run, whole processes.

Digits (400 training images), the default MLP, 1 epoch, MLflow into a temporary SQLite store. Measured per round:
the imports every process pays once (TensorFlow, Keras, MLflow: `import pipeline.core, mlflow`), one run's process,
and the 4-job multirun's process. One run's own time is the run process minus the imports. Target: the multirun
takes no more than (the imports + 4 x one run's time) + 10 %, i.e. TensorFlow is imported once and a job costs what
a run does. Usage: PYTHONPATH=. python benchmarks/multirun_overhead.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
JOBS = 4
SETUP = ["data.max_train_samples=400", "trainer.epochs=1", "trainer.verbose=0"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - started


def main() -> None:
    imports, single, multi = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        store = f"tracking.uri=sqlite:///{folder}/mlruns/mlflow.db"
        wall([sys.executable, "-m", "pipeline.run", *SETUP, store, f"hydra.run.dir={folder}/warm-up"])  # migrations
        for round_ in range(ROUNDS):
            imports.append(wall([sys.executable, "-c", "import pipeline.core, mlflow"]))
            single.append(wall([sys.executable, "-m", "pipeline.run", *SETUP, store,
                                f"hydra.run.dir={folder}/{round_}"]))
            multi.append(wall([sys.executable, "-m", "pipeline.run", "-m", *SETUP, store,
                               f"seed={','.join(str(seed) for seed in range(1, JOBS + 1))}",
                               f"hydra.sweep.dir={folder}/multi-{round_}"]))
            print(f"round {round_ + 1}: imports {imports[-1]:.1f} s, one run {single[-1]:.1f} s, "
                  f"{JOBS}-job multirun {multi[-1]:.1f} s", flush=True)
    imported, one, many = (statistics.median(values) for values in (imports, single, multi))
    budget = (imported + JOBS * (one - imported)) * 1.10
    print(f"cores: {os.cpu_count()}; medians of {ROUNDS} rounds: imports {imported:.1f} s, one run's own time "
          f"{one - imported:.1f} s, {JOBS}-job multirun {many:.1f} s; budget (imports + {JOBS} runs) + 10 % "
          f"{budget:.1f} s: {'within' if many <= budget else 'OVER'}")


if __name__ == "__main__":
    main()
