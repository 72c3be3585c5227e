"""The jobs of a command line: Hydra's sweep syntax expanded, every job checked before any starts, a multirun's
parent run."""

import subprocess
import sys

import pytest
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


@pytest.mark.parametrize("error, status", [(RuntimeError("a job failed"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_the_parent_run_of_a_multirun_that_fails_ends_as_it_did(mlflow_store, error, status):
    config = OmegaConf.create({"hydra": {"overrides": {"task": ["optimizer=sgd,adam", mlflow_store.override]}}})
    parent = MultirunParentRun()
    with pytest.raises(type(error)), MultirunParentRun.ended_with_the_jobs():
        parent.on_multirun_start(config)
        assert MultirunParentRun.current() is parent and parent.jobs == 2
        raise error
    (run,) = mlflow_store.runs()
    assert run.info.status == status and run.data.tags["jobs"] == "2"
    assert MultirunParentRun.current() is None
