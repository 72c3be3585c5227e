"""The command line: one-line errors with a non-zero exit, --cfg job, and a full run writing metrics.json."""

import json
import os
import subprocess
import sys

import pytest

from pipeline.config import PROJECT_ROOT


def pipeline_run(*args: str, cwd=PROJECT_ROOT, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PIPELINE_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "pipeline.run", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["optimizer=does_not_exist"], "error: optimizer=does_not_exist: unknown option; choose one of"),
        (["trainer.epochs=0"], "error: trainer.epochs=0: input should be greater than or equal to 1"),
        (["--bogus"], "error: --bogus: unknown option"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_tensorflow(args, expected):
    result = pipeline_run(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(expected), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["data=npz", "data.path=/nonexistent/file.npz"], "/nonexistent/file.npz"),
        (["device=gpu"], "error: device=gpu: TensorFlow sees no GPU"),
    ],
)
def test_bad_environment_exits_2_with_one_line(args, expected, tmp_path):
    result = pipeline_run(*args, "tracking=none", f"output_dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and expected in last_line, result.stderr
    assert "Traceback" not in result.stderr


def test_cfg_job_prints_the_composed_config():
    result = pipeline_run("--cfg", "job", "optimizer=sgd", "trainer.epochs=3")
    assert result.returncode == 0, result.stderr
    assert "name: sgd" in result.stdout and "epochs: 3" in result.stdout and "momentum:" in result.stdout


def test_a_run_prints_and_writes_test_metrics(tmp_path):
    result = pipeline_run("tracking=none", "trainer.epochs=2", "trainer.verbose=0", f"output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.5
    assert f"test_accuracy  {metrics['test_accuracy']:.4f}" in result.stdout
