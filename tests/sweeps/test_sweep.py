"""Whole sweeps, in-process, on tiny digits: real journal storage, real MLflow SQLite store."""

import shlex
import time
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from pipeline.compose import compose_config, flatten, validate
from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from sweeps.mlflow_runs import MODEL_ID_ATTR, RUN_ID_ATTR
from sweeps.report import BASELINE_ATTR
from sweeps.sweep import run_sweep
from sweeps.trial_config import CONFIG_GROUPS
from sweeps.workers import REASON_ATTR
from tests.sweeps.conftest import TINY, runs_of, study_of

# One parameter with a good and a hopeless learning rate: pruning and failures become predictable.
LR_ONLY = ["~sweep.params.optimizer", "~sweep.params.momentum", "~sweep.params.dropout", "~sweep.params.learning_rate"]


def lr_choices(*rates: float) -> list[str]:
    return [*LR_ONLY, f"+sweep.params.lr={{key: optimizer.learning_rate, type: categorical, choices: {list(rates)}}}"]


def test_sweep_logs_parent_and_child_runs_and_resumes_to_the_total(sweep_overrides):
    overrides = [*sweep_overrides, "sweep.n_trials=3", "sweep.pruner=none"]
    summary = run_sweep(overrides)

    client, parents, children = runs_of(overrides)
    assert len(parents) == 1 and sorted(children) == [0, 1, 2]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_value"] == pytest.approx(summary.best_value)
    assert parent.data.tags["best_trial_run_id"] == children[summary.best_number].info.run_id
    assert parent.data.tags["reproduce_command"] == summary.command
    best = children[summary.best_number].info  # the report links to its run, in its experiment
    assert any(line.startswith("Best trial's MLflow run: http") and line.endswith(
        f"/#/experiments/{best.experiment_id}/runs/{best.run_id}?workflowType=machine_learning")
        for line in summary.lines()), summary.lines()
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")} >= {
        "optuna/optimization_history.png", "optuna/parallel_coordinate.png", "optuna/intermediate_values.png"}
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["optuna.state"] == "COMPLETE" and child.info.status == "FINISHED"
        assert "optuna.param.optimizer.learning_rate" in child.data.tags

    # The printed command trains exactly the best trial's config.
    best_params = children[summary.best_number].data.params
    command_config = flatten(validate(compose_config(shlex.split(summary.command)[3:])))
    for key in summary.best_values:
        flat_key = f"{key}.name" if key in CONFIG_GROUPS else key  # optimizer=sgd -> optimizer.name
        assert best_params[flat_key] == str(command_config[flat_key]), key

    resumed = run_sweep([*sweep_overrides, "sweep.n_trials=5", "sweep.pruner=none"])
    _, parents, children = runs_of(overrides)
    assert len(parents) == 1 and sorted(children) == [0, 1, 2, 3, 4]
    assert resumed.states == {"COMPLETE": 5}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_hopeless_trials_are_pruned_and_keep_their_epoch_metrics(sweep_overrides, trainer):
    overrides = [*sweep_overrides, f"trainer={trainer}", "trainer.epochs=4", "optimizer=adam", *lr_choices(0.02, 1e-7),
                 "sweep.n_trials=5", "sweep.sampler=random", "sweep.seed=0",
                 "sweep.pruner_startup_trials=1", "sweep.pruner_warmup_epochs=0"]
    run_sweep(overrides)
    study = study_of(overrides)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.params, t.state) for t in study.trials]
    client, _, children = runs_of(overrides)
    for trial in pruned:
        run = children[trial.number]
        assert run.info.status == "KILLED" and run.data.tags["optuna.state"] == "PRUNED"
        assert run.data.tags["stopped"].startswith("pruned after epoch")
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert 1 <= len(history) == len(trial.intermediate_values) < 4


def test_failing_trials_are_marked_fail_and_the_sweep_goes_on(sweep_overrides):
    overrides = [*sweep_overrides, "optimizer=sgd", *lr_choices(0.05, 1e30), "sweep.n_trials=4",
                 "sweep.sampler=random", "sweep.seed=1", "sweep.pruner=none"]
    summary = run_sweep(overrides)
    study = study_of(overrides)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and summary.best_number is not None
    _, _, children = runs_of(overrides)
    for trial in failed:
        assert children[trial.number].info.status == "FAILED"
        assert children[trial.number].data.tags["optuna.state"] == "FAIL"
        assert trial.user_attrs[RUN_ID_ATTR] == children[trial.number].info.run_id
        assert "diverged" in trial.user_attrs[REASON_ATTR]


def test_a_sweep_where_every_trial_fails_ends_with_one_clear_line(sweep_overrides):
    overrides = [*sweep_overrides, "optimizer=sgd", *lr_choices(1e30), "sweep.n_trials=2", "sweep.pruner=none"]
    with pytest.raises(PipelineError) as raised:
        run_sweep(overrides)
    assert str(raised.value).startswith("no trial of study kerastrack completed (2 of 2 failed; first: ")
    assert "\n" not in str(raised.value)
    _, parents, _ = runs_of(overrides)
    assert parents[0].info.status == "FINISHED"


def test_only_the_best_trial_keeps_its_model_and_plots_and_it_gets_registered(sweep_overrides):
    # Seed 9 draws learning rates 1e-3, 1e-2, 3e-2, 1e-4: the first trials improve on each other, the last does not.
    overrides = [*sweep_overrides, "optimizer=adam", *lr_choices(1e-4, 1e-3, 1e-2, 3e-2), "sweep.n_trials=4",
                 "sweep.sampler=random", "sweep.seed=9", "sweep.pruner=none", "sweep.baseline=false",
                 "sweep.register_best_as=digits-best"]
    summary = run_sweep(overrides)
    study = study_of(overrides)
    client, _, children = runs_of(overrides)
    best = study.best_trial
    values = [t.value for t in sorted(study.trials, key=lambda t: t.number)]
    superseded = 0
    # A trial logs its model and plots exactly when it beats every trial finished before it.
    for trial in study.trials:
        record = trial.number == 0 or trial.value > max(values[: trial.number])
        artifacts = {a.path for a in client.list_artifacts(children[trial.number].info.run_id, "plots")}
        assert (MODEL_ID_ATTR in trial.user_attrs) == record, trial.number
        assert (artifacts == {"plots/learning_curve.png", "plots/confusion_matrix.png"}) == record, trial.number
        assert client.list_artifacts(children[trial.number].info.run_id, "reports")  # text reports: always
        if record and trial.number != best.number:
            with pytest.raises(MlflowException):  # superseded: deleted when the sweep ended
                client.get_logged_model(trial.user_attrs[MODEL_ID_ATTR])
            superseded += 1
    assert superseded >= 1, values
    model_id = best.user_attrs[MODEL_ID_ATTR]
    assert client.get_logged_model(model_id).source_run_id == children[best.number].info.run_id
    assert summary.best_model_id == model_id and summary.registered_version == "digits-best version 1"
    (version,) = client.search_model_versions("name='digits-best'")
    assert (version.run_id, version.source) == (children[best.number].info.run_id,
                                                client.get_logged_model(model_id).artifact_location)

    # Resumed with the same best trial: no second version.
    assert run_sweep([*overrides[:-1], "sweep.n_trials=4", "sweep.register_best_as=digits-best"]).registered_version \
        == "digits-best version 1"
    assert len(client.search_model_versions("name='digits-best'")) == 1


def test_trial_artifacts_none_logs_metrics_only(sweep_overrides):
    overrides = [*sweep_overrides, "sweep.n_trials=2", "sweep.pruner=none", "sweep.trial_artifacts=none"]
    run_sweep(overrides)
    client, _, children = runs_of(overrides)
    for run in children.values():
        assert not client.list_artifacts(run.info.run_id, "plots") and run.outputs.model_outputs == []
        assert "test_accuracy" in run.data.metrics


def test_the_commands_own_config_is_trial_0_once_and_the_end_shows_the_top_trials(sweep_overrides):
    overrides = [*sweep_overrides, "optimizer=sgd", "optimizer.learning_rate=0.05", "model.dropout=0.1",
                 "sweep.n_trials=2", "sweep.pruner=none"]
    summary = run_sweep(overrides)
    resumed = run_sweep([*overrides, "sweep.n_trials=3"])
    study = study_of(overrides)
    assert study.trials[0].params == {"optimizer": "sgd", "optimizer.learning_rate": 0.05, "model.dropout": 0.1,
                                      "optimizer.momentum": 0.0}
    assert [t.number for t in study.trials if t.user_attrs.get(BASELINE_ATTR)] == [0]  # not again on resume
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    lines = resumed.lines()
    top = lines[lines.index("Top 3 trials:") + 2:][:3]
    assert [int(line.split()[0]) for line in top] == sorted(range(3), key=lambda n: -study.trials[n].value)
    assert any(line.endswith("(baseline)") and "optimizer=sgd optimizer.learning_rate=0.05" in line for line in top)
    assert "Top 2 trials:" in summary.lines()


def test_without_a_baseline_every_trial_is_sampled(sweep_overrides):
    overrides = [*sweep_overrides, "optimizer.learning_rate=0.05", "sweep.n_trials=1", "sweep.pruner=none",
                 "sweep.baseline=false"]
    run_sweep(overrides)
    (trial,) = study_of(overrides).trials
    assert BASELINE_ATTR not in trial.user_attrs and trial.params["optimizer.learning_rate"] != 0.05


@pytest.mark.slow
def test_a_timeout_stops_claiming_trials(sweep_overrides):
    overrides = [*sweep_overrides, "sweep.n_trials=500", "sweep.pruner=none", "sweep.timeout=6s",
                 "sweep.trial_artifacts=none"]
    started = time.monotonic()
    summary = run_sweep(overrides)
    study = study_of(overrides)
    assert 1 <= len(study.trials) < 500 and summary.states == {"COMPLETE": len(study.trials)}
    assert time.monotonic() - started < 60  # the last trial started before 6 s and took a few seconds


def test_a_live_sweep_is_never_closed_by_the_starts_of_its_trials(sweep_overrides):
    # Each trial's start closes the experiment's dead runs; the parent beats in the launcher, far more often than this.
    overrides = [*sweep_overrides, "sweep.n_trials=3", "sweep.pruner=none", "tracking.stale_after=0.5"]
    run_sweep(overrides)
    _, parents, children = runs_of(overrides)
    assert [parent.info.status for parent in parents] == ["FINISHED"]
    assert [run for run in [*parents, *children.values()] if "killed_reason" in run.data.tags] == []


def test_patience_ends_a_study_early_says_why_and_a_resumed_study_stays_stopped(sweep_overrides, capsys):
    # One learning rate: every trial trains the same config, so none improves on the first by min_delta.
    overrides = [*sweep_overrides, *lr_choices(1e-3), "sweep.n_trials=50", "sweep.pruner=none",
                 "sweep.trial_artifacts=none", "sweep.stop.patience=3", "sweep.stop.min_delta=0.05"]
    summary = run_sweep(overrides)
    assert len(study_of(overrides).trials) == 4  # the first, then 3 without an improvement
    assert summary.stopped.startswith("no improvement of val_accuracy by at least sweep.stop.min_delta=0.05 in the "
                                      "last 3 finished trials")
    assert f"Stopped early: {summary.stopped}" in summary.lines()
    _, parents, _ = runs_of(overrides)
    assert parents[0].data.tags["stop_reason"] == summary.stopped

    capsys.readouterr()
    resumed = run_sweep(overrides)
    assert len(study_of(overrides).trials) == 4 and resumed.stopped == summary.stopped
    assert f"has stopped: {summary.stopped}; no trial to run" in capsys.readouterr().out


MNIST_SAMPLE = ["data=npz", f"data.path={PROJECT_ROOT.parent / 'shared' / 'data' / 'mnist-sample.npz'}",
                "model=small_cnn", "data.max_train_samples=300", "trainer.epochs=1"]


@pytest.mark.slow
def test_a_two_objective_sweep_over_widths_tags_its_front_and_plots_it(sweep_overrides, capsys):
    stores = [o for o in sweep_overrides if o not in TINY]
    overrides = [*stores, *MNIST_SAMPLE, "trainer.verbose=0", "sweep=widths", "sweep.n_trials=12",
                 "sweep.pruner=median", "sweep.register_best_as=widths-best"]
    summary = run_sweep(overrides)
    study = study_of(overrides)
    front = {trial.number for trial in study.best_trials}
    assert len(front) >= 3 and {trial.number for trial in summary.front} == front
    assert "pruning is off: Optuna prunes single-objective studies only" in capsys.readouterr().out
    # The reported (and registered) trial: the front's most accurate.
    assert summary.best_number == max(study.best_trials, key=lambda t: (t.values[0], -t.number)).number
    assert summary.registered_version == "widths-best version 1"
    lines = summary.lines()
    assert f"Pareto front: {len(front)} trials (MLflow tag optuna.pareto_front=true)" in lines
    assert "the one sweep.register_best_as registers" in lines[lines.index(next(
        line for line in lines if line.startswith("Best trial ")))]
    client, parents, children = runs_of(overrides)
    for number, run in children.items():
        assert run.data.tags["optuna.pareto_front"] == str(number in front).lower()
        assert run.data.metrics["params"] == study.trials[number].values[1]
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "optuna")}
    assert {"optuna/pareto_front.html", "optuna/pareto_front.png"} <= artifacts
    assert sorted(map(int, parents[0].data.tags["pareto_front_trials"].split())) == sorted(front)
    # trial_artifacts=best: the front keeps its models, no trial off it does.
    kept = {number for number, run in children.items() if client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id='{run.info.run_id}'")}
    assert kept == front


def test_a_constraint_marks_violating_trials_infeasible_and_never_best(sweep_overrides):
    # hidden_units 256 gives 19,210 parameters, 8 gives 610: only the small network is within 5,000; the baseline is
    # the small one, seed 0 draws both after it.
    overrides = [*sweep_overrides, "optimizer=adam", "model.hidden_units=[8]", *LR_ONLY,
                 "+sweep.params.width={key: model.hidden_units.0, type: categorical, choices: [8, 256]}",
                 "sweep.n_trials=4", "sweep.sampler=random", "sweep.seed=0", "sweep.pruner=none",
                 "sweep.constraints=[{metric: params, max: 5000}]"]
    summary = run_sweep(overrides)
    study = study_of(overrides)
    _, _, children = runs_of(overrides)
    wide = [t for t in study.trials if t.params["model.hidden_units.0"] == 256]
    narrow = [t for t in study.trials if t.params["model.hidden_units.0"] == 8]
    assert wide and narrow, [t.params for t in study.trials]
    for trial in wide:
        assert trial.constraints == {"params<=5000": 19210 - 5000}
        assert trial.user_attrs["infeasible"] == "params=19210 > 5000"
        assert children[trial.number].data.tags["optuna.feasible"] == "false"
    for trial in narrow:
        assert children[trial.number].data.tags["optuna.feasible"] == "true"
    assert summary.best_number in {t.number for t in narrow}


@pytest.mark.parametrize(("override", "message"), [
    ("sweep.objectives=[{metric: val_acc, direction: maximize}, {metric: params, direction: minimize}]",
     "sweep.objectives[0].metric=val_acc: unknown metric; choose loss, accuracy, val_loss, val_accuracy, a test_* "
     "metric (test_accuracy, test_loss, test_f1_macro) or a cost (params, model_size_mb, latency_ms, train_seconds)"),
    ("sweep.objectives=[{metric: val_accuracy, direction: up}, {metric: params, direction: minimize}]",
     "sweep.objectives[0].direction='up': allowed: 'maximize' or 'minimize'"),
    ("sweep.constraints=[{metric: size, max: 10}]", "sweep.constraints[0].metric=size: unknown metric"),
    ("sweep.stop.patience=0", "sweep.stop.patience=0: input should be greater than or equal to 1"),
])
def test_bad_objectives_constraints_and_stop_rules_are_one_line_and_create_no_study(sweep_overrides, override,
                                                                                    message):
    with pytest.raises(PipelineError) as raised:
        run_sweep([*sweep_overrides, override])
    assert message in str(raised.value) and "\n" not in str(raised.value)
    storage = next(o for o in sweep_overrides if o.startswith("sweep.storage=")).split("=", 1)[1]
    assert not Path(storage).exists()


def test_three_folds_give_three_results_per_trial_and_a_bad_trial_is_pruned_before_its_last(sweep_overrides):
    # Seed 0 draws the hopeless rate, the good one, then the hopeless one again: Wilcoxon prunes the last trial
    # after two folds worse than the best trial's (the smallest one-sided p-value of two pairs is 0.25).
    overrides = [*sweep_overrides, "optimizer=adam", *lr_choices(0.02, 1e-7), "sweep.n_trials=3",
                 "sweep.sampler=random", "sweep.seed=0", "sweep.baseline=false", "sweep.objective.folds=3",
                 "sweep.pruner=wilcoxon", "sweep.pruner_p_threshold=0.3", "sweep.trial_artifacts=none"]
    summary = run_sweep(overrides)
    study = study_of(overrides)
    rates = [t.params["optimizer.learning_rate"] for t in study.trials]
    assert rates == [1e-7, 0.02, 1e-7]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert [len(t.intermediate_values) for t in study.trials] == [3, 3, 2]
    assert summary.epochs_trained == (3 + 3 + 2) * 2  # every fold's epochs (trainer.epochs=2), not the folds
    assert study.trials[1].value == pytest.approx(sum(study.trials[1].intermediate_values.values()) / 3)
    assert summary.best_number == 1
    client, _, _ = runs_of(overrides)
    experiment = client.get_experiment_by_name("kerastrack").experiment_id
    for trial, status in zip(study.trials, ["FINISHED", "FINISHED", "KILLED"]):
        run = client.get_run(trial.user_attrs[RUN_ID_ATTR])
        folds = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        assert sorted(int(fold.data.tags["optuna.fold"]) for fold in folds) == list(range(len(
            trial.intermediate_values)))
        assert run.info.status == status
        history = client.get_metric_history(run.info.run_id, "fold_val_accuracy")
        assert [m.value for m in history] == list(trial.intermediate_values.values())
    assert client.get_run(study.trials[1].user_attrs[RUN_ID_ATTR]).data.metrics["cv_mean_val_accuracy"] == \
        pytest.approx(study.trials[1].value)
    assert study.trials[2].user_attrs[REASON_ATTR].startswith("pruned after fold 2 of 3")


@pytest.mark.parametrize(("override", "message"), [
    ("sweep.objective.folds=1", "sweep.objective.folds=1: input should be greater than or equal to 2"),
    ("sweep.objective.folds=3", "sweep.objective.folds=3: trials are pruned across folds, not epochs; set "
                                "sweep.pruner=wilcoxon (or none), not median"),
])
def test_bad_folds_are_one_line_and_create_no_study(sweep_overrides, override, message):
    with pytest.raises(PipelineError) as raised:
        run_sweep([*sweep_overrides, override])
    assert str(raised.value) == message
    storage = next(o for o in sweep_overrides if o.startswith("sweep.storage=")).split("=", 1)[1]
    assert not Path(storage).exists()
