"""A study's MLflow runs in a real SQLite store: the parent, the trial<->run mapping, dead workers' runs, models
(registering the best is tested by a whole sweep, tests/sweeps/test_sweep.py)."""

import optuna
import pytest

from pipeline.tracking.runs import close_run, create_run
from sweeps.heartbeat import RETRY_OF
from sweeps.mlflow_runs import MODEL_ID_ATTR, PARENT_RUN_ATTR, RUN_ID_ATTR, STATE_TAG, STUDY_TAG, TRIAL_TAG, SweepRuns
from tests.pipeline.tracking.conftest import settings_for


@pytest.fixture
def runs(mlflow_store) -> SweepRuns:
    return SweepRuns(settings_for(mlflow_store.override).tracking, "runs-test")


def trial_run(runs: SweepRuns, number: int) -> str:
    """A trial's run as run_pipeline creates it: tagged with the study and the trial."""
    return create_run(runs.client, runs.tracking, runs.uri, tags={STUDY_TAG: "runs-test", TRIAL_TAG: str(number)})


def test_the_parent_run_is_created_once_and_reopened_when_the_study_resumes(runs):
    study = optuna.create_study()
    parent = runs.parent_run(study, {"sweep.n_trials": "3"})
    assert study.user_attrs[PARENT_RUN_ATTR] == parent
    run = runs.client.get_run(parent)
    assert run.info.run_name == "sweep-runs-test" and run.data.tags["sweep.n_trials"] == "3"
    close_run(runs.client, parent, "KILLED")
    assert runs.parent_run(study, {}) == parent
    assert runs.client.get_run(parent).info.status == "RUNNING"


def test_a_trials_tags_name_the_study_trial_values_and_the_trial_it_retries(runs):
    study = optuna.create_study()
    study.enqueue_trial({}, user_attrs={RETRY_OF: 0})
    assert runs.trial_tags(study.ask(), {"optimizer.learning_rate": 0.01, "optimizer": "sgd"}) == {
        STUDY_TAG: "runs-test", TRIAL_TAG: "0", "optuna.param.optimizer.learning_rate": "0.01",
        "optuna.param.optimizer": "sgd", "optuna.retry_of": "0"}


def test_a_trials_run_is_found_by_its_attribute_or_by_its_tags(runs):
    study = optuna.create_study()
    tagged = trial_run(runs, 0)
    study.ask()
    study.ask().set_user_attr(RUN_ID_ATTR, "from-the-attribute")
    study.ask()
    first, second, third = study.trials
    assert runs.find_trial_run(first) == tagged  # killed before training stored the attribute
    assert runs.find_trial_run(second) == "from-the-attribute"
    assert runs.find_trial_run(third) is None


def test_tagging_a_trials_state_leaves_how_its_run_ended(runs):
    run_id = trial_run(runs, 0)
    close_run(runs.client, run_id, "FAILED")
    runs.tag_state(run_id, optuna.trial.TrialState.FAIL)
    run = runs.client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags[STATE_TAG] == "FAIL"


def test_a_dead_workers_running_trial_run_is_closed_killed_but_a_closed_one_is_left_as_it_ended(runs):
    study = optuna.create_study()
    running, finished = trial_run(runs, 0), trial_run(runs, 1)
    close_run(runs.client, finished)  # the worker died after its pipeline closed the run
    study.ask(), study.ask()
    for trial in study.trials:
        runs.close_stale_trial(trial)
    killed, kept = runs.client.get_run(running), runs.client.get_run(finished)
    assert killed.info.status == "KILLED" and killed.data.tags["stopped"] == "worker died (no heartbeat)"
    assert kept.info.status == "FINISHED" and "stopped" not in kept.data.tags
    assert killed.data.tags[STATE_TAG] == kept.data.tags[STATE_TAG] == "FAIL"


def test_only_the_best_trials_model_is_kept(runs):
    study = optuna.create_study(direction="maximize")
    models = [runs.client.create_logged_model(runs.experiment_id).model_id for _ in range(2)]
    for number, model_id in enumerate(models):
        study.add_trial(optuna.trial.create_trial(value=float(number), user_attrs={MODEL_ID_ATTR: model_id}))
    best = study.best_trial
    runs.keep_only_best_models(study.trials, {best.number})
    runs.keep_only_best_models(study.trials, {best.number})  # again, as a resumed study ends: already deleted is fine
    assert [m.model_id for m in runs.client.search_logged_models([runs.experiment_id])] == [models[1]]
