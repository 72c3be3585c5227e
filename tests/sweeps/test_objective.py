"""A trial's value from its run, and a trial whose objective is not finite: one FAILED run, closed once."""

import math
import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from pipeline.errors import PipelineError
from sweeps.mlflow_runs import RUN_ID_ATTR
from sweeps.objective import beats_finished_trials, objective_value
from sweeps.settings import Objective
from sweeps.sweep import run_sweep
from sweeps.workers import REASON_ATTR
from tests.mlflow_fixtures import MlflowStore
from tests.sweeps.conftest import runs_of, study_of

HISTORY = {"val_loss": [0.9, 0.4, 0.6], "val_accuracy": [0.5, 0.8, math.nan]}


@pytest.mark.parametrize(
    ("metric", "direction", "reduce", "expected"),
    [
        ("val_loss", "minimize", "best", 0.4),
        ("val_loss", "minimize", "last", 0.6),
        ("val_loss", "maximize", "best", 0.9),
        ("val_accuracy", "maximize", "best", 0.8),  # a NaN epoch is never the best one
        ("test_accuracy", "maximize", "best", 0.7),
    ],
)
def test_objective_value_is_the_best_or_last_epoch_or_the_test_metric(metric, direction, reduce, expected):
    objective = Objective(metric=metric, direction=direction, reduce=reduce)
    assert objective_value(HISTORY, {"test_accuracy": 0.7}, objective) == expected


def test_objective_value_is_nan_for_a_nan_last_epoch_or_a_metric_the_run_lacks():
    assert math.isnan(objective_value(HISTORY, {}, Objective(metric="val_accuracy", reduce="last")))
    assert math.isnan(objective_value({}, {}, Objective(metric="val_loss")))
    assert math.isnan(objective_value(HISTORY, {"test_accuracy": 0.7}, Objective(metric="test_f1_macro")))


@pytest.mark.parametrize(("direction", "better", "worse"), [("maximize", 0.6, 0.4), ("minimize", 0.4, 0.6)])
def test_a_value_beats_the_finished_trials_only_if_better_than_the_best(direction, better, worse):
    study = optuna.create_study(direction=direction)
    objective = Objective(direction=direction)
    assert beats_finished_trials(study, objective, worse)  # nothing finished yet
    study.add_trial(optuna.trial.create_trial(value=0.5))
    assert beats_finished_trials(study, objective, better)
    assert not beats_finished_trials(study, objective, worse)
    assert not beats_finished_trials(study, objective, 0.5)


def status_history(db: str):
    """Record every write of a run's status or end time, in the store itself (SQLite keeps no history)."""
    with sqlite3.connect(db) as connection:
        connection.executescript("""
            CREATE TABLE status_history (run_uuid TEXT, status TEXT, end_time INTEGER);
            CREATE TRIGGER status_written AFTER UPDATE OF status, end_time ON runs
            BEGIN INSERT INTO status_history VALUES (new.run_uuid, new.status, new.end_time); END;
        """)

    def of(run_id: str) -> list[tuple[str, int | None]]:
        with sqlite3.connect(db) as connection:
            return connection.execute(
                "SELECT status, end_time FROM status_history WHERE run_uuid = ? ORDER BY rowid", (run_id,)).fetchall()
    return of


def test_a_trial_with_a_nan_objective_ends_as_one_failed_run_closed_once(sweep_overrides, tmp_path):
    store = MlflowStore(tmp_path / "mlruns")  # the store sweep_overrides' tracking.uri points at
    history_of = status_history(str(store.root / "mlflow.db"))
    # A test_* metric the pipeline does not compute: training succeeds, the objective is NaN.
    overrides = [*sweep_overrides, "sweep.n_trials=1", "sweep.pruner=none", "sweep.objective.metric=test_missing"]
    with pytest.raises(PipelineError, match="no trial of study kerastrack completed"):
        run_sweep(overrides)

    (trial,) = study_of(overrides).trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[REASON_ATTR] == "test_missing=nan"
    _, _, children = runs_of(overrides)
    run = children[trial.number]
    assert run.info.run_id == trial.user_attrs[RUN_ID_ATTR]
    assert run.info.status == "FAILED" and run.data.tags["optuna.state"] == "FAIL"
    assert run.data.tags["error"] == "NonFiniteObjective: test_missing=nan"
    closes = [(status, end) for status, end in history_of(run.info.run_id) if end is not None]
    assert [status for status, _ in closes] == ["FAILED"]
    assert run.info.end_time == closes[0][1]
