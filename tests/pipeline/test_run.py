"""The command line, a Hydra app: one-line errors with exit 2, Hydra's flags, runs and multiruns in their folders."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest

from pipeline.config import PROJECT_ROOT
from tests.mlflow_fixtures import MlflowStore
from tests.pipeline.test_device import without_gpu
from tests.pipeline.test_tf_import import START_UP_NOISE, users_environment


def pipeline_run(*args: str, cwd=PROJECT_ROOT, timeout: int = 240, **env: str) -> subprocess.CompletedProcess:
    """`python -m pipeline.run` in a user's environment (none of the debugging switches) plus `env`."""
    # PYTHONPATH: this checkout's pipeline, whatever the working directory (an installed one may differ)
    return subprocess.run([sys.executable, "-m", "pipeline.run", *args], capture_output=True, text=True,
                          cwd=cwd, env=users_environment(PYTHONPATH=str(PROJECT_ROOT), **env), timeout=timeout)




@pytest.mark.parametrize(
    "args, expected",
    [
        (["optimizer=does_not_exist"], "error: optimizer=does_not_exist: unknown option; choose one of"),
        (["trainer.epochs=0"], "error: trainer.epochs=0: input should be greater than or equal to 1"),
        (["--bogus"], "error: --bogus: unknown option"),
        (["--resolve"], "error: The --resolve flag can only be used in conjunction with --cfg or --help"),
        (["--experimental-rerun", "config.pickle"], "error: --experimental-rerun config.pickle: not supported"),
        (["tracking.stale_after=-1"], "error: tracking.stale_after=-1: input should be greater than 0"),
        (["tracking.stale_after=5 parsecs"],
         "error: tracking.stale_after='5 parsecs': expected seconds or a number with s, m or h (600, 30m, 2h)"),
        (["resume=last", "device=multi_worker", "trainer=custom"],
         "error: resume=last cannot run with device=multi_worker: every worker must continue the same run"),
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
        pytest.param(["device=gpu"], "error: device=gpu: TensorFlow sees no GPU", marks=without_gpu),
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


def test_hydra_run_dir_holds_the_run_its_hydra_snapshot_and_log(tmp_path):
    run_dir = tmp_path / "run"
    result = pipeline_run("tracking=none", "trainer.epochs=1", "trainer.verbose=0", "data.max_train_samples=200",
                          f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (run_dir / "metrics.json").exists() and (run_dir / "checkpoints" / "last.keras").exists()
    assert "trainer.epochs=1" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "epochs: 1" in (run_dir / ".hydra" / "config.yaml").read_text()
    assert "test_accuracy" in (run_dir / "run.log").read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]  # nothing in the working directory


def test_a_run_shows_its_own_output_and_logs_it_as_plain_text_one_line_per_epoch(tmp_path):
    run_dir = tmp_path / "run"
    result = pipeline_run("tracking=none", "trainer.epochs=3", "data.max_train_samples=200", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert not START_UP_NOISE.search(result.stderr), result.stderr
    assert "\x1b[" in result.stdout  # the console's live progress bar, in colour
    log = (run_dir / "run.log").read_bytes().decode()  # as written: read_text would turn "\r" into "\n"
    assert "\r" not in log and "\x1b" not in log
    epoch_lines = [line for line in log.splitlines() if " - val_loss: " in line]
    assert len(epoch_lines) == 3 and all(line.startswith("7/7 ") for line in epoch_lines), log


def assert_ends_with_the_jobs_table(stdout: str, parent, children) -> None:
    """The multirun's last lines: each job's status, test metrics and swept override, then the parent run's link."""
    heading, _, *rows, link = stdout.strip().splitlines()[-(3 + len(children)):]
    assert heading == f"Multirun of {len(children)} jobs: FINISHED", stdout
    by_override = {row.split()[-1]: row.split() for row in rows}
    for child in children:
        row = by_override[f"optimizer={child.data.params['optimizer.name']}"]
        assert row[1:5] == ["FINISHED", *(f"{child.data.metrics[name]:.4f}"
                                          for name in ("test_accuracy", "test_loss", "test_f1_macro"))], rows
    assert [row.split()[-1] for row in rows] == ["optimizer=sgd", "optimizer=adam"]  # in the jobs' order
    assert link.startswith(f"MLflow parent run of the {len(children)} jobs: http") and parent.info.run_id in link


def test_a_multirun_groups_its_jobs_under_one_parent_run(tmp_path):
    mlflow_store = MlflowStore(tmp_path / "mlruns")  # a fresh store: the multirun creates it
    sweep_dir = tmp_path / "multirun"
    result = pipeline_run("-m", "optimizer=sgd,adam", "trainer.epochs=1", "trainer.verbose=0",
                          "data.max_train_samples=200", mlflow_store.override, f"hydra.sweep.dir={sweep_dir}",
                          MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="0.2")  # a sample within these short runs
    assert result.returncode == 0, result.stderr
    assert "[absl]" not in result.stdout  # no progress bar of MLflow's check of the logged model
    assert "Creating initial MLflow database tables" not in result.stderr, result.stderr
    runs = mlflow_store.runs()
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(run.data.params["optimizer.name"] for run in children) == ["adam", "sgd"]
    assert {run.info.status for run in children} == {"FINISHED"}
    assert all("system/cpu_utilization_percentage" in run.data.metrics for run in children)
    for job in ("0", "1"):
        assert (sweep_dir / job / ".hydra" / "config.yaml").exists() and (sweep_dir / job / "metrics.json").exists()
    client = mlflow_store.client()
    assert "run.log" in [artifact.path for artifact in client.list_artifacts(children[0].info.run_id)]
    logged = client.download_artifacts(children[0].info.run_id, "run.log", str(tmp_path))
    assert "Test metrics" in open(logged).read()  # the whole log, the summary printed after the run closed too
    experiment = parents[0].info.experiment_id
    for run in (*parents, *children):  # each run's page, in the UI's Model-training view
        assert f"/#/experiments/{experiment}/runs/{run.info.run_id}?workflowType=machine_learning" in result.stdout
    assert_ends_with_the_jobs_table(result.stdout, parents[0], children)


@pytest.mark.slow
def test_a_multirun_over_seeds_records_each_optimizers_spread_on_its_parent_run(tmp_path, mlflow_store):
    result = pipeline_run("-m", "seed=range(1,4)", "optimizer=sgd,adam", "trainer.epochs=2", "trainer.verbose=0",
                          "data.max_train_samples=200", "tracking.log_model=false", "tracking.system_metrics=false",
                          mlflow_store.override, f"hydra.sweep.dir={tmp_path / 'multirun'}", timeout=600)
    assert result.returncode == 0, result.stderr
    runs = mlflow_store.runs()
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6
    client = mlflow_store.client()
    for optimizer in ("sgd", "adam"):
        jobs = [run for run in children if run.data.params["optimizer.name"] == optimizer]
        assert sorted(run.data.params["seed"] for run in jobs) == ["1", "2", "3"]
        best = [max(point.value for point in client.get_metric_history(run.info.run_id, "val_accuracy"))
                for run in jobs]
        for metric, values in [("test_accuracy", [run.data.metrics["test_accuracy"] for run in jobs]),
                               ("best_val_accuracy", best)]:
            expected = [statistics.mean(values), statistics.stdev(values), min(values), max(values)]
            assert [parent.data.metrics[f"optimizer:{optimizer}/{metric}_{statistic}"]
                    for statistic in ("mean", "std", "min", "max")] == pytest.approx(expected), (optimizer, metric)
    assert "seed_groups.csv" in [artifact.path for artifact in client.list_artifacts(parent.info.run_id)]
    over_seeds = result.stdout[result.stdout.index("Over seeds"):].splitlines()
    assert [row.split()[:3] for row in over_seeds[2:4]] == [["optimizer=sgd", "test_accuracy", "3"],
                                                            ["optimizer=sgd", "test_loss", "3"]]
    assert over_seeds[-1].startswith("MLflow parent run of the 6 jobs: http")


def signal_when_training(command: list[str], store, signum: signal.Signals) -> subprocess.CompletedProcess:
    """Start `command`, send it `signum` once a job has logged an epoch; its outcome."""
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not any("val_accuracy" in run.data.metrics for run in store.runs()):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.3)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_ctrl_c_or_sigterm_during_a_multirun_leaves_no_run_running(tmp_path, mlflow_store, launcher, signum):
    if launcher:
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the [joblib] extra")
    result = signal_when_training(
        [sys.executable, "-m", "pipeline.run", "-m", *launcher, "optimizer=sgd,adam", "trainer.epochs=500",
         "trainer.verbose=0", "data.max_train_samples=200", mlflow_store.override,
         f"hydra.sweep.dir={tmp_path / 'multirun'}"], mlflow_store, signum)
    assert result.returncode == 130, result.stderr
    statuses = [run.info.status for run in mlflow_store.runs()]
    assert "KILLED" in statuses and "RUNNING" not in statuses and "FINISHED" not in statuses, statuses


@pytest.mark.slow
def test_the_joblib_launcher_runs_jobs_in_processes_with_their_share_of_the_cores(tmp_path, mlflow_store):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="needs the [joblib] extra")
    result = pipeline_run("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer=sgd,adam",
                          "trainer.epochs=1", "trainer.verbose=0", "data.max_train_samples=200", mlflow_store.override,
                          f"hydra.sweep.dir={tmp_path / 'multirun'}")
    assert result.returncode == 0, result.stderr
    runs = mlflow_store.runs()
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and {run.info.status for run in (parent, *children)} == {"FINISHED"}
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert [run.data.params["device.intra_op_threads"] for run in children] == [share, share]
    assert_ends_with_the_jobs_table(result.stdout, parent, children)  # the jobs ran in other processes


def test_a_bad_value_in_any_job_fails_before_the_first_starts(tmp_path, mlflow_store):
    sweep_dir = tmp_path / "multirun"
    result = pipeline_run("-m", "optimizer.learning_rate=0.1,0.01,-1", mlflow_store.override,
                          f"hydra.sweep.dir={sweep_dir}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: job #2 of 3: optimizer.learning_rate=-1: input should be greater than 0"
    assert not sweep_dir.exists() and mlflow_store.runs() == []


@pytest.mark.parametrize("flags, expected", [
    (["--info"], "Config search path"),
    (["--shell-completion", "install=bash"], "hydra_bash_completion()"),
    (["--cfg", "hydra"], "sweep:"),
    (["--cfg", "all", "--resolve", "optimizer=sgd"], "name: sgd"),
    (["--help"], "experiment: fashion_logistic,"),
])
def test_hydras_flags_show_without_running(flags, expected):
    result = pipeline_run(*flags)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
