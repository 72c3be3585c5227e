"""Two local workers (device=multi_worker, trainer=custom) vs one process, same global batch, same data.

Correctness is the point (the same losses); this prints what the cluster costs: samples/s of each, and the
communication per step (the gradient all-reduce and the stop flag the workers agree on), the difference between
the two step times. Epoch 1 (tracing) is left out; the time is the median of the later epochs' epoch_time.
Usage: python benchmarks/multi_worker.py [model] [epochs] [steps_per_execution]
    model: mlp (default) or small_cnn; steps_per_execution: auto (default: the workers run 16 steps per call, the
    single process what its probe picks) or a number for both (1: the workers also agree on the stop flag before
    every step, not once per call)
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.compose import compose_config, validate
from pipeline.data import load_data

MODEL = sys.argv[1] if len(sys.argv) > 1 else "mlp"
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
STEPS_PER_EXECUTION = sys.argv[3] if len(sys.argv) > 3 else "auto"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-sample.npz"
SETUP = [f"model={MODEL}", "trainer=custom", f"trainer.epochs={EPOCHS}", "trainer.verbose=0", "trainer.batch_size=64",
         "model.dropout=0", f"trainer.steps_per_execution={STEPS_PER_EXECUTION}",
         *(["data=npz", f"data.path={DATA}"] if DATA.exists() else [])]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(overrides: list[str], folder: Path, name: str, tf_config: str | None = None) -> subprocess.Popen:
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if tf_config:
        environment["TF_CONFIG"] = tf_config
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", *SETUP, *overrides, f"output_dir={folder}/{name}",
         f"tracking.uri=sqlite:///{folder}/{name}-mlruns/mlflow.db"],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> None:
    _, errors = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise SystemExit(f"a run failed:\n{errors[-2000:]}")


def epoch_stats(folder: Path, name: str) -> tuple[float, list[float]]:
    """Median later-epoch time and the per-epoch losses, from the run's MLflow store."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder}/{name}-mlruns/mlflow.db")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    times = [m.value for m in client.get_metric_history(run.info.run_id, "epoch_time")]
    losses = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    return statistics.median(times[1:]), losses


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        finished(start(["device=cpu"], folder, "single"))
        workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        processes = [
            start(["device=multi_worker"], folder, f"worker{index}",
                  json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
            for index in range(2)
        ]
        for process in processes:
            finished(process)
        single_time, single_losses = epoch_stats(folder, "single")
        multi_time, multi_losses = epoch_stats(folder, "worker0")
    samples = len(load_data(validate(compose_config(SETUP)).data).train)
    steps = math.ceil(samples / 64)
    data = DATA.name if DATA.exists() else "digits"
    print(f"cores: {os.cpu_count()}; model={MODEL}, {EPOCHS} epochs, global batch 64, {data}, "
          f"steps_per_execution={STEPS_PER_EXECUTION}")
    print(f"1 process:   epoch {single_time:.2f} s   losses {[round(v, 4) for v in single_losses]}")
    print(f"2 workers:   epoch {multi_time:.2f} s   losses {[round(v, 4) for v in multi_losses]}")
    largest = max(abs(a - b) / abs(b) for a, b in zip(multi_losses, single_losses))
    print(f"largest relative loss difference: {largest:.1e}; "
          f"2 workers / 1 process epoch time: {multi_time / single_time:.2f}x")
    print(f"samples/s: 1 process {samples / single_time:,.0f}, 2 workers {samples / multi_time:,.0f}; "
          f"communication per step ({steps} steps): {(multi_time - single_time) / steps * 1000:.1f} ms")


if __name__ == "__main__":
    main()
