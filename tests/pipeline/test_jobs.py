"""The jobs of a command line: Hydra's sweep syntax expanded, every job checked before any starts, a multirun's
parent run."""

import subprocess
import sys

import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import OmegaConf

from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from pipeline.jobs import MultirunParentRun, check_jobs, hydra_overrides, job_overrides


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
