"""Test-wide set-up: quiet TensorFlow, and two logical CPU devices so multi-device strategies run without a GPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")
# One TensorFlow thread per pool in each xdist worker and each process a test starts: the workers already fill the
# cores, and more threads only contend (benchmarks never run under this conftest).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import pytest  # noqa: E402

from pipeline.compose import compose_config  # noqa: E402

pytest_plugins = ["tests.mlflow_fixtures"]

# Tiny, quick runs: digits, few epochs, no progress bars.
QUICK = ["trainer.epochs=2", "trainer.verbose=0", "data.max_train_samples=400"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    # Each worker runs TensorFlow with its own thread pools and memory; past a few, workers only contend.
    return max(1, min(len(os.sched_getaffinity(0)), 4))


def pytest_configure(config: pytest.Config) -> None:
    # Logical devices can only be configured before TensorFlow starts its runtime, so do it first thing.
    from pipeline.device import split_cpu

    split_cpu(2)


@pytest.fixture
def compose():
    """compose_config with the quick-run overrides first (a test's own overrides win)."""

    def _compose(*overrides: str, quick: bool = True):
        return compose_config([*(QUICK if quick else []), *overrides])

    return _compose
