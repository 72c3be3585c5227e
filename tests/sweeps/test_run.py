"""`python -m sweeps.run` keeps its own syntax and takes Hydra's flags where they make sense."""

import subprocess
import sys

import pytest

from pipeline.config import PROJECT_ROOT
from sweeps.run import _as_trials_dir


def sweeps_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.run", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)


@pytest.mark.parametrize("flags, expected", [
    (["--help"], "usage: python -m sweeps.run"),
    (["--cfg", "job", "sweep.n_trials=3"], "n_trials: 3"),
    (["--cfg", "hydra"], "name: sweep"),
])
def test_hydras_flags_show_the_sweeps_config(flags, expected):
    result = sweeps_run(*flags)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_multirun_is_one_line_and_exit_2():
    result = sweeps_run("-m", "optimizer=sgd,adam")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: -m: a sweep is many runs already; set sweep.n_trials (and sweep.n_workers)"


def test_hydras_output_folder_is_where_the_trials_go():
    assert _as_trials_dir("hydra.sweep.dir=/tmp/s") == "sweep.trials_dir=/tmp/s"
    assert _as_trials_dir("hydra.run.dir=/tmp/s") == "sweep.trials_dir=/tmp/s"
    assert _as_trials_dir("optimizer=sgd") == "optimizer=sgd"
