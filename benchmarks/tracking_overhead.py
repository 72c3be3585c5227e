"""What MLflow tracking adds to a run: the same run with tracking=local vs tracking=none, back-to-back pairs.

    python benchmarks/tracking_overhead.py [--pairs 5] [--epochs 10] [key=value ...]

One process, one SQLite store in a temp dir (migrated before timing). A warm-up pair (imports, first
traces) is not counted; the pairs alternate which run goes first. Prints the overhead per run (wall time
local minus none), the tracker's fixed cost split into its parts, and its per-epoch cost (the epoch
callback's own time, median over all epochs). Targets: fixed <= 1.0 s per run, per-epoch <= 5 ms median.
Each pair also runs tracking=local with tracking.system_metrics=false: what MLflow's system metrics add to a
run's wall time (target <= 0.1 s), and the monitor's own start and stop. The heartbeat's cost per run (target
<= 0.05 s): its start (host, pid, first stamp) and stop, the query for dead runs (a process's first start pays it,
counted here in full), and one beat (a tag written every min(tracking.stale_after / 4, 60 s), so a run pays one
per such interval). And tracking=local with tracking.tensorboard=true (the other tracking=local runs have it false):
what TensorBoard's logs add to a run's wall time (target <= 0.2 s), with what a process's first such run adds
(TensorBoard's modules, imported then), and per epoch the TensorBoard callback's own hooks against the epoch's time
(target <= 2 %), beside the epochs' times of both. Only the hooks `RunTensorBoard` defines are timed: wrapping one
it leaves to keras.callbacks.Callback would change what Keras does (a batch-end hook turns every call's logs into
floats).

What it times is `run_pipeline` inside this one process, not a `python -m pipeline.run` process: MLflow's import,
the store's pre-flight check (the CLI runs it in `jobs.check_jobs`; `run_pipeline` repeats it once per process and
store, here in the warm-up pair) and the CLI's second upload of the run's log file after the run has closed
(`jobs.run_job`) are outside every figure. The start is timed up to the run's id, which opens the run before training
(a run otherwise opens on its recording thread as training begins, pipeline.tracking.recording): the parts are what
the tracker spends, not what a run waits for. `benchmarks/end_to_end.py` times whole processes.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from mlflow import MlflowClient
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from pipeline import tracking
from pipeline.compose import compose_config, validate
from pipeline.core import RunOptions, run_pipeline
from pipeline.tracking import epochs, heartbeat, lifecycle, mlflow_tracker, tensorboard_runs

Timings = dict[str, list[float]]
FIXED_PARTS = ("start: store, run, params, tags, config", "datasets", "model logging",
               "test metrics, plots, reports", "end: checkpoints, status")
HEARTBEAT_PARTS = ("heartbeat start", "heartbeat stop")
BEATS = 20  # beats timed on one run, after the pairs
TENSORBOARD_ONCE = ("set_model", "on_train_begin", "on_train_end", "close")  # the hooks (and close) run once per run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    args, overrides = parser.parse_known_args()
    started = time.perf_counter()
    from pipeline.tracking import tensorboard  # what a process's first run with TensorBoard logs imports
    tensorboard_import = time.perf_counter() - started
    hooks = [name for name in (*TENSORBOARD_ONCE, "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
                               "on_train_batch_end", "on_test_begin", "on_test_end")
             if name in vars(tensorboard.RunTensorBoard)]

    with tempfile.TemporaryDirectory() as scratch:
        uri = f"sqlite:///{scratch}/mlruns/mlflow.db"
        common = [f"trainer.epochs={args.epochs}", "trainer.verbose=0", f"output_dir={scratch}/out", *overrides]
        local = [*common, "tracking=local", f"tracking.uri={uri}"]
        variants = {"local": [*local, "tracking.tensorboard=false"], "none": [*common, "tracking=none"],
                    "local, no system metrics": [*local, "tracking.tensorboard=false", "tracking.system_metrics=false"],
                    "local, tensorboard": [*local, "tracking.tensorboard=true"]}
        Path(scratch, "mlruns").mkdir()
        MlflowClient(uri).search_experiments()  # a fresh database's migrations are not a per-run cost
        timings: Timings = defaultdict(list)
        with instrumented(timings, tensorboard.RunTensorBoard, hooks):
            for variant in variants.values():  # warm-up pair
                run_pipeline(validate(compose_config(variant)), RunOptions(overrides=variant))
            first_tensorboard = tensorboard_import + sum(sum(timings[f"tensorboard {hook}"])
                                                         for hook in [*hooks, "upload"])
            dead_run_check = timings["dead-run check"]  # once per process and store: the warm-up's first start
            timings.clear()
            wall: Timings = defaultdict(list)
            epoch_times: Timings = defaultdict(list)
            for pair in range(args.pairs):
                order = list(variants) if pair % 2 == 0 else list(reversed(variants))
                for name in order:
                    started = time.perf_counter()
                    result = run_pipeline(validate(compose_config(variants[name])),
                                          RunOptions(overrides=variants[name]))
                    wall[name].append(time.perf_counter() - started)
                    epoch_times[name] += result.history["epoch_time"]
                overhead = wall["local"][-1] - wall["none"][-1]
                print(f"pair {pair + 1}: local {wall['local'][-1]:.2f} s, none {wall['none'][-1]:.2f} s, "
                      f"overhead {overhead:+.2f} s; without system metrics "
                      f"{wall['local, no system metrics'][-1]:.2f} s; with tensorboard "
                      f"{wall['local, tensorboard'][-1]:.2f} s", flush=True)
        beats = time_beats(uri)

    overheads = [local - none for local, none in zip(wall["local"], wall["none"])]
    system_metrics = [on - off for on, off in zip(wall["local"], wall["local, no system metrics"])]
    fixed = [sum(parts) for parts in zip(*(timings[part] for part in FIXED_PARTS))]
    print(f"\n{args.pairs} pairs, {args.epochs} epochs, {' '.join(overrides) or 'defaults (digits, mlp)'}:")
    print(f"  wall-time overhead per run (local - none), median   {statistics.median(overheads):+.3f} s")
    print(f"  tracker fixed cost per run, median                  {statistics.median(fixed):.3f} s  (target <= 1.0)")
    for part in FIXED_PARTS:
        print(f"    {part:<46} {statistics.median(timings[part]):.3f} s")
    print(f"  system metrics: wall-time cost per run, median      {statistics.median(system_metrics):+.3f} s  "
          f"(target <= 0.1)")
    monitor = statistics.median(timings["system metrics start"]) + statistics.median(timings["system metrics stop"])
    print(f"    monitor start + stop, median                       {monitor:.3f} s")
    print(f"    monitor thread's CPU time per run, median         "
          f"{statistics.median(timings['system metrics thread']):.3f} s")
    beat = statistics.median(beats)
    per_run = sum(statistics.median(timings[part]) for part in HEARTBEAT_PARTS) + dead_run_check[0] + beat
    print(f"  heartbeat per run: start + stop + dead-run check + one beat, median {per_run:.4f} s  (target <= 0.05)")
    for part in HEARTBEAT_PARTS:
        print(f"    {part:<46} {statistics.median(timings[part]):.4f} s")
    print(f"    {'dead-run check (once per process and store)':<46} {dead_run_check[0]:.4f} s")
    print(f"    one beat (a tag), median of {BEATS}                    {beat:.4f} s")
    epoch_ms = [1000 * value for value in timings["epoch callback"]]
    print(f"  per-epoch cost (epoch callback), median             {statistics.median(epoch_ms):.2f} ms  "
          f"(max {max(epoch_ms):.2f} ms; target <= 5 ms)")
    report_tensorboard(wall, epoch_times, timings, hooks, args.pairs * args.epochs, first_tensorboard)


def report_tensorboard(wall: Timings, epoch_times: Timings, timings: Timings, hooks: list[str], epochs: int,
                       first: float) -> None:
    """tracking.tensorboard=true against tracking=local: per run (wall time, and what runs once: the hooks of
    TENSORBOARD_ONCE, the first epoch's end, which creates the validation writer, and the logs' upload as the run
    closes), and per epoch (the median later epoch's end plus the other hooks' time per epoch) against the median
    epoch."""
    per_run = [on - off for on, off in zip(wall["local, tensorboard"], wall["local"])]
    print(f"  tensorboard: wall-time cost per run (on - off), median {statistics.median(per_run):+.3f} s  "
          f"(target <= 0.2; single pairs {min(per_run):+.3f} to {max(per_run):+.3f} s)")
    runs = len(per_run)
    epoch_ends = timings["tensorboard on_epoch_end"]
    first_epochs, later_epochs = epoch_ends[::len(epoch_ends) // runs], [
        value for index, value in enumerate(epoch_ends) if index % (len(epoch_ends) // runs)]
    once_hooks = [hook for hook in TENSORBOARD_ONCE if hook in hooks]
    once = [sum(timings[f"tensorboard {hook}"][run] for hook in [*once_hooks, "upload"]) + first_epochs[run]
            for run in range(runs)]
    print(f"    once per run ({', '.join(once_hooks)}, first epoch's end, upload), median "
          f"{1000 * statistics.median(once):.1f} ms; a process's first such run (its hooks and TensorBoard's imports) "
          f"{first:.3f} s")
    other_hooks = sum(sum(timings[f"tensorboard {hook}"]) for hook in hooks
                      if hook not in (*TENSORBOARD_ONCE, "on_epoch_end"))
    per_epoch = statistics.median(later_epochs) + other_hooks / epochs
    epoch = statistics.median(epoch_times["local, tensorboard"])
    print(f"    its epoch end (median of later epochs) + other hooks per epoch {1000 * per_epoch:.2f} ms = "
          f"{100 * per_epoch / epoch:.2f} % of the median epoch, {1000 * epoch:.1f} ms  (target <= 2 %)")
    print(f"    median epoch time, tensorboard on / off            {1000 * epoch:.1f} / "
          f"{1000 * statistics.median(epoch_times['local']):.1f} ms")
    for hook in hooks:
        print(f"    {hook:<46} {1000 * sum(timings[f'tensorboard {hook}']) / epochs:.2f} ms per epoch (all epochs)")
    print(f"    {'upload of the logs (artifacts tensorboard/)':<46} "
          f"{1000 * statistics.median(timings['tensorboard upload']):.2f} ms per run, median")


@contextlib.contextmanager
def instrumented(timings: Timings, tensorboard: type, tensorboard_hooks: list[str]):
    """Time the tracker's parts by wrapping them where the core and the tracker look them up; of `tensorboard`
    (RunTensorBoard), `tensorboard_hooks`."""
    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, label: str, clock: Callable[[], float] = time.perf_counter) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))
        setattr(owner, name, timed(original, label, timings, clock))

    wrap(mlflow_tracker.MlflowRunTracker, "log_datasets", "datasets")
    wrap(mlflow_tracker, "log_keras_model", "model logging")
    wrap(mlflow_tracker.MlflowRunTracker, "log_results", "log_results")
    wrap(epochs.EpochLogger, "on_epoch_end", "epoch callback")
    for hook in tensorboard_hooks:
        wrap(tensorboard, hook, f"tensorboard {hook}")
    wrap(heartbeat.Heartbeat, "start", "heartbeat start")
    wrap(heartbeat.Heartbeat, "stop", "heartbeat stop")
    wrap(lifecycle.heartbeat, "close_dead_runs", "dead-run check")
    wrap(SystemMetricsMonitor, "start", "system metrics start")
    wrap(SystemMetricsMonitor, "finish", "system metrics stop")
    wrap(SystemMetricsMonitor, "monitor", "system metrics thread", clock=time.thread_time)  # its CPU time
    upload = MlflowClient.log_artifacts
    originals.append((MlflowClient, "log_artifacts", upload))

    def timed_upload(client: MlflowClient, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        started = time.perf_counter()
        try:
            upload(client, run_id, local_dir, artifact_path)
        finally:
            if artifact_path == tensorboard_runs.FOLDER:  # the TensorBoard logs, as the run closes
                timings["tensorboard upload"].append(time.perf_counter() - started)

    MlflowClient.log_artifacts = timed_upload
    original_run = tracking.tracked_run
    originals.append((tracking, "tracked_run", original_run))
    tracking.tracked_run = timed_run(original_run, timings)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        if timings.get("log_results"):
            # The metrics/plots/reports part is what log_results spends besides the model.
            timings["test metrics, plots, reports"] = [
                total - model for total, model in zip(timings.pop("log_results"), timings["model logging"])]


def time_beats(uri: str) -> list[float]:
    """What the heartbeat's thread does each interval, timed on a run of the benchmark's store."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run = client.search_runs([experiment.experiment_id for experiment in client.search_experiments()],
                             max_results=1)[0]
    beating = heartbeat.Heartbeat(client, run.info.run_id, stale_after=3600)
    timings = []
    for _ in range(BEATS):
        started = time.perf_counter()
        beating.beat()
        timings.append(time.perf_counter() - started)
    return timings


def timed(function: Callable, label: str, timings: Timings, clock: Callable[[], float] = time.perf_counter) -> Callable:
    def wrapper(*args, **kwargs):
        started = clock()
        try:
            return function(*args, **kwargs)
        finally:
            timings[label].append(clock() - started)

    return wrapper


def timed_run(tracked_run: Callable, timings: Timings) -> Callable:
    @contextlib.contextmanager
    def wrapper(settings, **kwargs):
        started = time.perf_counter()
        with tracked_run(settings, **kwargs) as tracker:
            if tracker.run_id is not None:
                timings["start: store, run, params, tags, config"].append(time.perf_counter() - started)
            yield tracker
            finished = time.perf_counter()
        if tracker.run_id is not None:
            timings["end: checkpoints, status"].append(time.perf_counter() - finished)

    return wrapper


if __name__ == "__main__":
    main()
