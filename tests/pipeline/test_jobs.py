"""The jobs of a command line: Hydra's sweep syntax expanded, every job checked before any starts."""

import pytest

from pipeline.errors import PipelineError
from pipeline.jobs import check_jobs, hydra_overrides, job_overrides


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


def test_a_bad_value_in_a_later_job_fails_the_whole_multirun():
    assert len(check_jobs(["optimizer.learning_rate=0.1,0.01"], multirun=True)) == 2
    with pytest.raises(PipelineError, match=r"^job #2 of 3: optimizer.learning_rate=-1: input should be greater than 0$"):
        check_jobs(["optimizer.learning_rate=0.1,0.01,-1"], multirun=True)
    with pytest.raises(PipelineError, match=r"^trainer.epochs=0: input should be greater than or equal to 1$"):
        check_jobs(["trainer.epochs=0"], multirun=False)


def test_output_dir_is_hydras_run_or_sweep_dir():
    assert hydra_overrides(["output_dir=/tmp/a", "seed=1"], multirun=False) == ["hydra.run.dir=/tmp/a", "seed=1"]
    assert hydra_overrides(["output_dir=/tmp/a"], multirun=True) == ["hydra.sweep.dir=/tmp/a"]
