"""Per-trial overhead of a sweep, and the worker's peak RSS after trial 5 and trial 30.

Overhead = a trial's wall time (Optuna's ask -> tell, plus freeing its memory afterwards) minus the model's own
work, timed here: building it (`build_model`), compiling it (`core._compiled_model`), the steps-per-call probe
(`trainer.resolve_steps_per_execution`: one probe per network and optimizer a process meets), training it
(`trainer.train`) and evaluating it. What remains is config building, Optuna, MLflow run creation/logging/closing,
data loading and freeing memory; the sweep's own share (everything outside run_pipeline) is printed separately.
30 trials on
digits (300 training images, 2 epochs, an MLP [32]) with MLflow tracking into a temporary SQLite store.
Usage: python benchmarks/sweep_overhead.py
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import optuna  # noqa: E402

import pipeline.core as core  # noqa: E402
import pipeline.memory as memory  # noqa: E402
import sweeps.objective as objective  # noqa: E402
import sweeps.workers as workers  # noqa: E402
from sweeps.mlflow_runs import MODEL_ID_ATTR  # noqa: E402
from sweeps.sweep import run_sweep  # noqa: E402

N_TRIALS = 30
spent: list[float] = []  # the model's own seconds (build, compile, probe, train, evaluate), one entry per trial
in_pipeline: list[float] = []  # run_pipeline seconds, one entry per trial
freeing: list[float] = []  # release_memory seconds after each trial
peak_rss_mb: dict[int, float] = {}


def timed(function, into: list[float]):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            into[-1] += time.perf_counter() - started
    return wrapper


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    core.build_model = timed(core.build_model, spent)
    core._compiled_model = timed(core._compiled_model, spent)
    core.trainer.resolve_steps_per_execution = timed(core.trainer.resolve_steps_per_execution, spent)
    core.trainer.train = timed(core.trainer.train, spent)
    core.evaluate_model = timed(core.evaluate_model, spent)
    objective.run_pipeline = timed(objective.run_pipeline, in_pipeline)
    release = memory.release_memory

    def release_and_measure():  # runs after the trial's tell, so its time is added to that trial's wall
        started = time.perf_counter()
        release()
        freeing.append(time.perf_counter() - started)
        peak_rss_mb[len(freeing)] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        spent.append(0.0)
        in_pipeline.append(0.0)

    memory.release_memory = release_and_measure
    spent.append(0.0)
    in_pipeline.append(0.0)
    with tempfile.TemporaryDirectory() as tmp:
        run_sweep([
            "data.max_train_samples=300", "trainer.epochs=2", "trainer.verbose=0", "model.hidden_units=[32]",
            f"sweep.n_trials={N_TRIALS}", "sweep.pruner=none", f"sweep.storage={tmp}/study.log",
            f"sweep.trials_dir={tmp}/trials", f"tracking.uri=sqlite:///{tmp}/mlruns/mlflow.db",
        ])
        study = optuna.load_study(study_name="kerastrack", storage=workers.SweepContext.load(
            [f"sweep.storage={tmp}/study.log"]).storage)
        walls = [(t.datetime_complete - t.datetime_start).total_seconds() + freed
                 for t, freed in zip(study.trials, freeing)]
        with_model = sum(MODEL_ID_ATTR in t.user_attrs for t in study.trials[1:])
    overheads = [wall - inside for wall, inside in zip(walls, spent)][1:]  # trial 0 pays TensorFlow's warm-up
    sweep_own = [wall - inside for wall, inside in zip(walls, in_pipeline)][1:]
    print(f"trials: {N_TRIALS}; median trial wall {statistics.median(walls):.3f} s, "
          f"median model work (build, compile, probe, train, evaluate) {statistics.median(spent[:N_TRIALS]):.3f} s")
    print(f"per-trial overhead: median {statistics.median(overheads):.3f} s (target <= 0.3 s), "
          f"mean {statistics.mean(overheads):.3f} s, max {max(overheads):.3f} s "
          f"({with_model} of trials 1-{N_TRIALS - 1} beat all before them and logged model and plots)")
    print(f"  of which the sweep's own (outside run_pipeline: config, Optuna, heartbeat, freeing memory): "
          f"median {statistics.median(sweep_own):.3f} s (freeing memory {statistics.median(freeing[1:]):.3f} s); "
          f"the rest is run_pipeline's data loading and MLflow logging")
    print(f"peak RSS after trial 5: {peak_rss_mb[5]:.0f} MiB, after trial 30: {peak_rss_mb[30]:.0f} MiB "
          f"(ratio {peak_rss_mb[30] / peak_rss_mb[5]:.2f})")


if __name__ == "__main__":
    main()
