"""What a sweep process sets up from its command line: the settings split, the stores, and dead workers' trials."""

import time

import pytest
from optuna.trial import TrialState

from pipeline.errors import PipelineError
from sweeps.context import SweepContext
from sweeps.heartbeat import HEARTBEAT, RETRY_OF
from sweeps.mlflow_runs import RUN_ID_ATTR, SweepRuns
from sweeps.study import open_study


def test_the_command_line_splits_into_the_trials_overrides_and_the_study(sweep_overrides, tmp_path):
    sweep = SweepContext.load([*sweep_overrides, "sweep.n_trials=3", "optimizer=sgd"])
    assert sweep.pipeline_overrides == [o for o in [*sweep_overrides, "optimizer=sgd"] if not o.startswith("sweep.")]
    assert sweep.pipeline_settings.optimizer.name == "sgd" and sweep.sweep_settings.n_trials == 3
    assert sweep.location == f"{tmp_path}/optuna/study.log" and sweep.trials_dir == tmp_path / "trials"
    assert isinstance(sweep.runs, SweepRuns) and sweep.runs.uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"


def test_without_tracking_a_sweep_has_no_runs(tmp_path):
    sweep = SweepContext.load(["tracking=none", f"sweep.storage={tmp_path}/study.log"])
    assert sweep.runs is None


def test_a_storage_that_cannot_be_opened_is_one_line(sweep_overrides, tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(PipelineError, match=r"^sweep\.storage: cannot open .*a-file/study\.log \(\w+Error: [^\n]*\)$"):
        SweepContext.load([*sweep_overrides, f"sweep.storage={tmp_path}/a-file/study.log"])


def test_a_dead_workers_trial_is_failed_queued_again_and_its_run_closed_killed(sweep_overrides):
    sweep = SweepContext.load([*sweep_overrides, "sweep.grace_period=5", "sweep.heartbeat_interval=1"])
    study = open_study(sweep.sweep_settings, sweep.storage)
    dead = study.ask({})
    dead.suggest_float("optimizer.learning_rate", 1e-4, 1e-1, log=True)
    dead.set_user_attr(HEARTBEAT, time.time() - 60)
    run_id = sweep.runs.client.create_run(sweep.runs.experiment_id).info.run_id
    dead.set_user_attr(RUN_ID_ATTR, run_id)

    sweep.fail_stale_trials_locked(study)
    failed, retry = study.trials
    assert failed.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING and retry.user_attrs[RETRY_OF] == failed.number
    again = study.ask()  # the retry, with the dead trial's parameters
    assert again.number == retry.number
    suggested = again.suggest_float("optimizer.learning_rate", 1e-4, 1e-1, log=True)
    assert suggested == failed.params["optimizer.learning_rate"]
    assert sweep.runs.client.get_run(run_id).info.status == "KILLED"
