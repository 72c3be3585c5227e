"""Several training processes on one machine: each gets its share of the cores and a GPU (sweep workers, the
jobs of a multirun under a parallel launcher), so they do not fight over them. No TensorFlow here: a process is
pinned before TensorFlow loads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSlot:
    """One worker's share of the machine: TensorFlow thread pools (0 = TensorFlow's choice) and a GPU."""

    index: int
    intra_op_threads: int
    inter_op_threads: int
    gpu: str | None = None

    def thread_settings(self, intra_set: int, inter_set: int) -> dict[str, int]:
        """The thread-pool sizes to set, unless the user set device.*_op_threads."""
        return {
            **({"device.intra_op_threads": self.intra_op_threads} if intra_set == 0 else {}),
            **({"device.inter_op_threads": self.inter_op_threads} if inter_set == 0 else {}),
        }

    def overrides(self, intra_set: int, inter_set: int) -> list[str]:
        return [f"{key}={value}" for key, value in self.thread_settings(intra_set, inter_set).items()]


def plan_slots(n_workers: int, cpu_count: int, gpus: list[str]) -> list[WorkerSlot]:
    """Split the cores evenly (so workers do not fight over them) and deal the GPUs round-robin."""
    if n_workers == 1:
        return [WorkerSlot(0, 0, 0)]
    intra = max(1, cpu_count // n_workers)
    return [WorkerSlot(i, intra, 1, gpus[i % len(gpus)] if gpus else None) for i in range(n_workers)]


def visible_gpus() -> list[str]:
    """GPU ids a worker may be pinned to, found without importing TensorFlow."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip() and gpu.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    query = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    return query.stdout.split() if query.returncode == 0 else []


def parallel_processes(n_jobs: int, cpu_count: int) -> int:
    """How many processes joblib's `n_jobs` means: negative counts back from the cores (-1 = all of them)."""
    return max(1, n_jobs if n_jobs > 0 else cpu_count + 1 + n_jobs)
