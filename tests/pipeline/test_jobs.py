"""The jobs of a command line: Hydra's sweep syntax expanded, every job checked before any starts, a multirun's
parent run."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import OmegaConf

from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from pipeline.jobs import MultirunParentRun, check_jobs, hydra_overrides, job_overrides
from pipeline.seed_groups import STATISTICS


def test_sweep_syntax_expands_as_hydras_basic_sweeper_does():
    jobs = job_overrides(["optimizer=sgd,adam", "trainer.epochs=range(1,3)", "seed=1"], multirun=True)
    assert jobs == [
        ["optimizer=sgd", "trainer.epochs=1", "seed=1"],
        ["optimizer=sgd", "trainer.epochs=2", "seed=1"],
        ["optimizer=adam", "trainer.epochs=1", "seed=1"],
        ["optimizer=adam", "trainer.epochs=2", "seed=1"],
    ]
    assert [job[0] for job in job_overrides(["optimizer=glob(*,exclude=adam*)"], multirun=True)] == [
        "optimizer=rmsprop", "optimizer=sgd"]
    assert job_overrides(["optimizer=sgd"], multirun=False) == [["optimizer=sgd"]]
    assert job_overrides(["seed=1,2", "optimizer=sgd", "seed=3"], multirun=True) == [["seed=3", "optimizer=sgd"]]
    with pytest.raises(PipelineError, match=r"^optimizer.learning_rate=interval\(0,1\): Hydra's basic sweeper"):
        job_overrides(["optimizer.learning_rate=interval(0,1)"], multirun=True)


def test_a_bad_value_in_a_later_job_fails_the_whole_multirun():
    assert len(check_jobs(["optimizer.learning_rate=0.1,0.01"], multirun=True)) == 2
    with pytest.raises(PipelineError,
                       match=r"^job #2 of 3: optimizer.learning_rate=-1: input should be greater than 0$"):
        check_jobs(["optimizer.learning_rate=0.1,0.01,-1"], multirun=True)
    with pytest.raises(PipelineError, match=r"^trainer.epochs=0: input should be greater than or equal to 1$"):
        check_jobs(["trainer.epochs=0"], multirun=False)


def test_a_config_error_is_found_without_numpy_or_the_data_readers():
    """A typo fails in well under the time NumPy, scikit-learn and the readers take to import."""
    script = (
        "import sys\n"
        "from pipeline.errors import PipelineError\n"
        "from pipeline.jobs import check_jobs\n"
        "try:\n    check_jobs(['optimizer.learnin_rate=1'], multirun=False)\n"
        "except PipelineError as error:\n    print(error)\n"
        "print(sorted(name for name in ('numpy', 'pipeline.data', 'sklearn') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.stdout.splitlines() == [
        "optimizer.learnin_rate: unknown key; allowed: name, learning_rate, beta_1, beta_2, schedule, decay_rate",
        "[]"], result.stderr


def test_output_dir_is_hydras_run_or_sweep_dir():
    assert hydra_overrides(["output_dir=/tmp/a", "seed=1"], multirun=False) == ["hydra.run.dir=/tmp/a", "seed=1"]
    assert hydra_overrides(["output_dir=/tmp/a"], multirun=True) == ["hydra.sweep.dir=/tmp/a"]


def multirun_config(*overrides: str):
    return OmegaConf.create({"hydra": {"overrides": {"task": list(overrides)}, "sweep": {"dir": "/tmp/multirun"}}})


@pytest.mark.parametrize("error, status", [(RuntimeError("a job failed"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_the_parent_run_of_a_multirun_that_fails_ends_as_it_did(mlflow_store, capsys, error, status):
    parent = MultirunParentRun()
    with pytest.raises(type(error)), MultirunParentRun.ended_with_the_jobs():
        parent.on_multirun_start(multirun_config("optimizer=sgd,adam", mlflow_store.override))
        assert MultirunParentRun.current() is parent and parent.jobs == 2
        client = mlflow_store.client()
        for optimizer, job_status, metrics in [("adam", "FAILED", {}), ("sgd", "FINISHED", {"test_accuracy": 0.75})]:
            job = client.create_run(client.get_run(parent.run_id).info.experiment_id, tags={
                MLFLOW_PARENT_RUN_ID: parent.run_id, "overrides": f"optimizer={optimizer} {mlflow_store.override}"})
            for name, value in metrics.items():
                client.log_metric(job.info.run_id, name, value)
            client.set_terminated(job.info.run_id, job_status)
        raise error
    run = next(run for run in mlflow_store.runs() if MLFLOW_PARENT_RUN_ID not in run.data.tags)
    assert run.info.status == status and run.data.tags["jobs"] == "2"
    assert MultirunParentRun.current() is None
    printed = capsys.readouterr().out.splitlines()
    if status == "KILLED":  # Ctrl-C stops without a table
        assert not any(line.startswith("Multirun of") for line in printed), printed
        return
    table = printed[printed.index("Multirun of 2 jobs: FAILED"):]
    assert table[2].split() == ["0", "FINISHED", "0.7500", "-", "-", "optimizer=sgd"]  # the jobs' order
    assert table[3].split() == ["1", "FAILED", "-", "-", "-", "optimizer=adam"]
    assert table[4].startswith("MLflow parent run of the 2 jobs: http") and run.info.run_id in table[4]


def test_an_untracked_multirun_ends_with_a_table_of_what_hydra_handed_back(capsys):
    parent = MultirunParentRun()
    config = multirun_config("optimizer=sgd,adam", "trainer.epochs=1,2", "tracking=none")
    parent.on_multirun_start(config)
    metrics = {"test_accuracy": 0.8, "test_loss": 0.5, "test_f1_macro": 0.7}
    for overrides, status in [(["optimizer=sgd", "trainer.epochs=2", "tracking=none"], JobStatus.COMPLETED),
                              (["optimizer=adam", "trainer.epochs=1", "tracking=none"], JobStatus.FAILED)]:
        parent.on_job_end(config, JobReturn(overrides=overrides, status=status,
                                            _return_value=metrics if status == JobStatus.COMPLETED else ValueError()))
    parent.on_multirun_end(config)
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0] == "Multirun of 4 jobs: FINISHED"
    assert table[1].split() == ["job", "status", "test_accuracy", "test_loss", "test_f1_macro", "overrides"]
    assert [line.split() for line in table[2:]] == [
        ["1", "FINISHED", "0.8000", "0.5000", "0.7000", "optimizer=sgd", "trainer.epochs=2"],
        ["2", "FAILED", "-", "-", "-", "optimizer=adam", "trainer.epochs=1"]]


def test_a_multirun_over_seeds_records_each_groups_statistics_on_its_parent_run(mlflow_store, capsys, tmp_path):
    parent = MultirunParentRun()
    parent.on_multirun_start(multirun_config("seed=1,2,3", "optimizer=sgd,adam", mlflow_store.override))
    client, run_id = mlflow_store.client(), parent.run_id
    experiment = client.get_run(run_id).info.experiment_id
    children: dict[str, list[dict[str, float]]] = {"sgd": [], "adam": []}
    for number, (seed, optimizer) in enumerate((s, o) for s in (1, 2, 3) for o in ("sgd", "adam")):
        job = client.create_run(experiment, tags={MLFLOW_PARENT_RUN_ID: run_id,
                                                  "overrides": f"seed={seed} optimizer={optimizer}"}).info.run_id
        metrics = {"test_accuracy": 0.5 + number / 20, "test_loss": 1.0 - number / 30, "test_f1_macro": 0.4 + seed / 9}
        for name, value in metrics.items():
            client.log_metric(job, name, value)
        val_accuracy = [0.3 + number / 25, 0.6 + number / 50, 0.5]  # best (checkpoint mode max): the second epoch
        for step, value in enumerate(val_accuracy, start=1):
            client.log_metric(job, "val_accuracy", value, step=step)
        client.set_terminated(job, "FINISHED")
        children[optimizer].append({**metrics, "best_val_accuracy": max(val_accuracy)})
    parent.on_multirun_end(multirun_config("seed=1,2,3", "optimizer=sgd,adam", mlflow_store.override))
    recorded = client.get_run(run_id).data.metrics
    for optimizer, jobs in children.items():
        for metric in ("test_accuracy", "test_loss", "test_f1_macro", "best_val_accuracy"):
            values = np.array([job[metric] for job in jobs])
            assert [recorded[f"optimizer:{optimizer}/{metric}_{statistic}"] for statistic in STATISTICS] == (
                pytest.approx([values.mean(), values.std(ddof=1), values.min(), values.max()])), (optimizer, metric)
    assert len(recorded) == 2 * 4 * 4  # groups x metrics x statistics
    table = client.download_artifacts(run_id, "seed_groups.csv", str(tmp_path))
    rows = list(csv.DictReader(open(table)))
    assert [(row["group"], row["metric"], row["seeds"]) for row in rows[:4]] == [
        ("optimizer=sgd", metric, "3") for metric in ("test_accuracy", "test_loss", "test_f1_macro",
                                                      "best_val_accuracy")]
    assert float(rows[4]["mean"]) == pytest.approx(np.mean([job["test_accuracy"] for job in children["adam"]]))
    printed = capsys.readouterr().out.splitlines()
    over_seeds = printed[printed.index(next(line for line in printed if line.startswith("Over seeds"))):]
    assert over_seeds[1].split() == ["group", "metric", "seeds", *STATISTICS]
    assert over_seeds[2].split() == ["optimizer=sgd", "test_accuracy", "3", *(
        f"{value:.4f}" for value in (0.6, np.std([0.5, 0.6, 0.7], ddof=1), 0.5, 0.7))]
    assert over_seeds[-1].startswith("MLflow parent run of the 6 jobs: http") and run_id in over_seeds[-1]


def test_an_untracked_multirun_over_seeds_prints_the_statistics_of_what_hydra_handed_back(capsys):
    parent = MultirunParentRun()
    config = multirun_config("seed=1,2", "tracking=none")
    parent.on_multirun_start(config)
    for seed, accuracy in ((1, 0.8), (2, 0.6)):
        parent.on_job_end(config, JobReturn(overrides=[f"seed={seed}", "tracking=none"], status=JobStatus.COMPLETED,
                                            _return_value={"test_accuracy": accuracy, "best_val_accuracy": 0.9}))
    parent.on_multirun_end(config)
    printed = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in printed[printed.index(next(line for line in printed
                                                                  if line.startswith("Over seeds"))) + 2:]]
    assert rows == [["-", "test_accuracy", "2", "0.7000", f"{np.std([0.8, 0.6], ddof=1):.4f}", "0.6000", "0.8000"],
                    ["-", "best_val_accuracy", "2", "0.9000", "0.0000", "0.9000", "0.9000"]]
