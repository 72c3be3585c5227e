"""The end of a sweep from a real study: the ranking, the best trial and its command, the parent run's record."""

import shlex
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from pipeline.compose import compose_config, validate
from pipeline.tracking.links import run_page
from sweeps.heartbeat import RETRY_OF
from sweeps.mlflow_runs import RUN_ID_ATTR, SweepRuns
from sweeps.report import BASELINE_ATTR, log_to_parent, summarize, top_trials
from sweeps.settings import FloatParam, Objective
from tests.pipeline.tracking.conftest import settings_for

PARAMS = {"lr": FloatParam(key="optimizer.learning_rate", type="float", low=1e-4, high=0.1, log=True)}
LR = "optimizer.learning_rate"


def trial(lr: float, state=TrialState.COMPLETE, value=None, reported=None, **user_attrs):
    return create_trial(state=state, value=value, params={LR: lr}, user_attrs=user_attrs,
                        distributions={LR: FloatDistribution(1e-4, 0.1, log=True)}, intermediate_values=reported or {})


def minimizing_study() -> optuna.Study:
    study = optuna.create_study(direction="minimize")
    for made in [
        trial(0.001, value=0.5, reported={1: 0.7, 2: 0.5}, **{BASELINE_ATTR: True}),
        trial(0.01, value=0.2, reported={1: 0.4, 2: 0.2}, **{RUN_ID_ATTR: "run-1"}),
        trial(0.05, state=TrialState.PRUNED, reported={1: 0.9, 2: 0.6}),
        trial(0.09, state=TrialState.FAIL),
        trial(0.02, value=0.3, reported={1: 0.3, 2: 0.3}, **{RETRY_OF: 3}),
    ]:
        study.add_trial(made)
    return study


def test_top_trials_when_minimizing_rank_completed_lowest_first_then_pruned_by_their_best_epoch():
    ranked = top_trials(minimizing_study().trials, PARAMS, "minimize")
    assert [(r.number, r.value, r.state, r.note) for r in ranked] == [
        (1, 0.2, "COMPLETE", ""), (4, 0.3, "COMPLETE", "retry of 3"), (0, 0.5, "COMPLETE", "baseline"),
        (2, 0.6, "PRUNED", ""),
    ]
    assert ranked[0].values == {LR: 0.01}


def test_top_trials_when_maximizing_rank_highest_first():
    ranked = top_trials(minimizing_study().trials, PARAMS, "maximize")
    assert [r.number for r in ranked] == [0, 4, 1, 2]


def test_the_summary_names_the_best_trial_and_a_command_that_trains_its_config():
    study = minimizing_study()
    summary = summarize(study, PARAMS, ["model=mlp", "trainer.epochs=3"], [Objective(direction="minimize")])
    assert (summary.best_number, summary.best_value, summary.best_run_id) == (1, 0.2, "run-1")
    assert summary.states == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 1} and summary.epochs_trained == 8
    assert summary.command == "python -m pipeline.run model=mlp trainer.epochs=3 optimizer.learning_rate=0.01"
    settings = validate(compose_config(shlex.split(summary.command)[3:]))
    assert (settings.optimizer.learning_rate, settings.trainer.epochs) == (0.01, 3)
    assert "Reproduce it: " + summary.command in summary.lines()


def test_a_study_without_a_completed_trial_has_no_best():
    study = optuna.create_study()
    study.add_trial(trial(0.01, state=TrialState.FAIL))
    summary = summarize(study, PARAMS, [], [Objective()])
    assert summary.best_number is None and summary.command is None and summary.top == []


def test_the_parent_run_gets_the_best_value_parameters_command_and_plots(mlflow_store, tmp_path):
    runs = SweepRuns(settings_for(mlflow_store.override).tracking, "report-test")
    study = minimizing_study()
    parent = runs.parent_run(study, {})
    summary = summarize(study, PARAMS, ["trainer.epochs=3"], [Objective(direction="minimize")], runs)
    page = run_page(mlflow_store.uri, runs.experiment_id, "run-1")
    assert f"/#/experiments/{runs.experiment_id}/runs/run-1?workflowType=machine_learning" in page
    assert f"Best trial's MLflow run: {page}" in summary.lines()  # a link, as the parent run's line gives
    log_to_parent(runs, parent, summary, study)
    run = runs.client.get_run(parent)
    assert run.data.metrics["best_value"] == 0.2 and run.data.metrics["trials_complete"] == 3
    assert run.data.tags["best_trial"] == "1" and run.data.tags[f"best.{LR}"] == "0.01"
    assert run.data.tags["reproduce_command"] == summary.command
    command_file = Path(runs.client.download_artifacts(parent, "best_trial_command.txt", str(tmp_path)))
    assert command_file.read_text() == summary.command + "\n"
    assert {a.path for a in runs.client.list_artifacts(parent, "optuna")} >= {"optuna/optimization_history.png"}
