"""device=multi_worker: the cluster read from TF_CONFIG or SLURM, the rendezvous, and two real worker processes
training one model in step, recorded once by the chief."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import cluster
from pipeline.compose import validate
from pipeline.errors import PipelineError
from tests.pipeline.test_run import pipeline_run
from tests.ports import free_port

CHECKPOINT_FILES = ["best.keras", "last.keras", "state.json"]
QUICK_MULTI = ["device=multi_worker", "trainer=custom", "trainer.verbose=2", "model.dropout=0",
               "data.max_train_samples=512", "trainer.batch_size=64"]


def tf_config(workers: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def test_tf_config_names_the_workers_and_this_ones_index(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config(["a:1", "b:2", "b:3"], 1))
    found = cluster.from_environment()
    assert (found.workers, found.index, found.is_chief, found.hosts) == (("a:1", "b:2", "b:3"), 1, False, ("a", "b"))


@pytest.mark.parametrize("raw, problem", [
    ("{bad", "TF_CONFIG is not JSON (Expecting property name enclosed in double quotes at character 1)"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "cluster.worker=[] is not a list"),
    (tf_config(["a:1", "b:2"], 2), "task.index=2 is out of range: the cluster has workers 0..1"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task={'type': 'ps', 'index': 0} is not"),
])
def test_a_malformed_tf_config_is_one_line(monkeypatch, raw, problem):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(PipelineError, match="^device=multi_worker: ") as error:
        cluster.from_environment()
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_without_tf_config_a_slurm_step_gives_one_worker_per_task(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("SLURM_STEP_NODELIST", "gpu[07-08],cpu3")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "2(x2),1")
    monkeypatch.setenv("SLURM_PROCID", "4")
    found = cluster.from_environment()
    assert found.workers == ("gpu07:8888", "gpu07:8889", "gpu08:8888", "gpu08:8889", "cpu3:8888")
    assert (found.index, found.source) == (4, "SLURM")
    monkeypatch.delenv("SLURM_STEP_NODELIST")
    with pytest.raises(PipelineError, match="TF_CONFIG is not set and this is no SLURM job step"):
        cluster.from_environment()


def test_a_worker_that_never_joins_fails_after_join_timeout():
    alone = cluster.Cluster((f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"), 0, "TF_CONFIG")
    started = time.monotonic()
    with pytest.raises(PipelineError, match=r"^device.join_timeout=1: only 0 of the 1 other worker\(s\) joined"):
        cluster.rendezvous(alone, timeout=1)
    assert time.monotonic() - started < 5
    with pytest.raises(PipelineError, match=r"^device.join_timeout=1: the chief \(worker 0 at"):
        cluster.rendezvous(cluster.Cluster(alone.workers, 1, "TF_CONFIG"), timeout=1)


@pytest.mark.parametrize("overrides, environment, expected", [
    (["trainer=fit"], tf_config(["127.0.0.1:1", "127.0.0.1:2"], 0),
     "error: trainer=fit cannot run with device=multi_worker: Keras 3's model.fit fails under "
     "MultiWorkerMirroredStrategy (keras-team/keras#20585); use trainer=custom"),
    (["trainer=custom"], "[1, 2]", "error: device=multi_worker: TF_CONFIG is list, not an object"),
])
def test_the_cli_refuses_in_one_line_before_training(monkeypatch, overrides, environment, expected):
    monkeypatch.setenv("TF_CONFIG", environment)
    result = pipeline_run("device=multi_worker", *overrides)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(expected), result.stderr
    assert "\n" not in result.stderr.strip()


def start_workers(count: int, overrides: list[str], tmp_path) -> list[subprocess.Popen]:
    workers = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return [subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", *QUICK_MULTI, *overrides, f"output_dir={tmp_path}/worker{index}"],
        env={**environment, "TF_CONFIG": tf_config(workers, index)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for index in range(count)]


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_records(tmp_path, mlflow_store, compose):
    from pipeline.core import run_pipeline

    workers = start_workers(2, ["trainer.epochs=2", mlflow_store.override], tmp_path)
    outputs = [worker.communicate(timeout=400)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [output[-2000:] for output in outputs]
    assert "worker 1 of 2" in outputs[1] and "worker 0 records the run" in outputs[1]

    [run] = mlflow_store.runs()
    assert run.info.status == "FINISHED"
    assert (run.data.tags["cluster_size"], run.data.tags["cluster_hosts"]) == ("2", "127.0.0.1")
    losses = [m.value for m in mlflow_store.client().get_metric_history(run.info.run_id, "train_loss")]
    assert len(losses) == 2
    assert sorted(path.name for path in (tmp_path / "worker0" / "checkpoints").iterdir()) == CHECKPOINT_FILES
    # The other worker's folder keeps only its console log and Hydra's snapshot; its scratch checkpoints are gone.
    assert sorted(path.name for path in (tmp_path / "worker1").iterdir()) == [".hydra", "run.log"]

    single = run_pipeline(validate(compose(*QUICK_MULTI[1:], "device=cpu", "trainer.epochs=2", "tracking=none",
                                  f"output_dir={tmp_path}/single", quick=False)))
    assert losses == pytest.approx(single.history["loss"], rel=1e-3)  # the same global batch, the same steps


@pytest.mark.slow
def test_sigterm_to_any_worker_stops_all_and_the_run_resumes(tmp_path, mlflow_store):
    workers = start_workers(2, ["trainer.epochs=200", mlflow_store.override], tmp_path)
    chief = workers[0]
    for line in chief.stdout:  # wait for the first epoch to end: a checkpoint exists
        if line.startswith("Epoch 3/"):
            break
    workers[1].send_signal(signal.SIGTERM)
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [130, 130], [output[-2000:] for output in outputs]
    [run] = mlflow_store.runs()
    assert run.info.status == "KILLED"
    done = len(mlflow_store.client().get_metric_history(run.info.run_id, "train_loss"))
    assert 2 <= done < 200

    resumed = start_workers(2, [f"trainer.epochs={done + 1}", mlflow_store.override, f"resume={run.info.run_id}"],
                            tmp_path / "resumed")
    outputs = [worker.communicate(timeout=300)[0] for worker in resumed]
    assert [worker.returncode for worker in resumed] == [0, 0], [output[-2000:] for output in outputs]
    [run] = mlflow_store.runs()
    assert run.info.status == "FINISHED"
    assert len(mlflow_store.client().get_metric_history(run.info.run_id, "train_loss")) == done + 1
