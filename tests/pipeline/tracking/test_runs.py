"""Runs of every kind in a real SQLite store: the experiment, new and nested runs,
parents that end as their jobs did."""

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.errors import PipelineError
from pipeline.tracking.runs import EXPERIMENT_KIND, close_parent_run, close_run, create_run, experiment_id, reopen_run
from tests.pipeline.tracking.conftest import settings_for


@pytest.fixture
def tracking(mlflow_store):
    return settings_for(mlflow_store.override, "tracking.experiment=runs-test").tracking


def test_the_experiment_is_created_once_with_its_artifacts_beside_the_database(mlflow_store, tracking):
    client = mlflow_store.client()
    first = experiment_id(client, tracking, mlflow_store.uri)
    assert experiment_id(client, tracking, mlflow_store.uri) == first
    experiment = client.get_experiment(first)
    assert experiment.name == "runs-test"
    assert experiment.artifact_location == (mlflow_store.root / "artifacts").as_uri()
    assert experiment.tags[EXPERIMENT_KIND] == "custom_model_development"


def test_a_deleted_experiment_is_refused_in_one_line(mlflow_store, tracking):
    client = mlflow_store.client()
    client.delete_experiment(experiment_id(client, tracking, mlflow_store.uri))
    with pytest.raises(PipelineError,
                       match=r"^tracking\.experiment=runs-test: that experiment is deleted in .*restore"):
        experiment_id(client, tracking, mlflow_store.uri)


def test_a_run_is_created_running_nested_with_its_passwords_masked_and_closed_and_reopened(mlflow_store, tracking):
    client = mlflow_store.client()
    parent = create_run(client, tracking, mlflow_store.uri, name="group")
    child = create_run(client, tracking, mlflow_store.uri, parent_run_id=parent,
                       tags={"storage": "postgresql://me:secret@db/optuna"})
    run = client.get_run(child)
    assert run.info.status == "RUNNING" and run.data.tags[MLFLOW_PARENT_RUN_ID] == parent
    assert run.data.tags["storage"] == "postgresql://me:***@db/optuna"
    assert client.get_run(parent).info.run_name == "group"
    close_run(client, child)
    assert client.get_run(child).info.status == "FINISHED"
    reopen_run(client, child)
    assert client.get_run(child).info.status == "RUNNING"


def child_statuses(client, parent_id: str) -> list[str]:
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id],
                              filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'")
    return sorted(run.info.status for run in runs)


def test_a_parent_run_that_ends_well_is_finished_and_leaves_its_children_alone(mlflow_store, tracking):
    client = mlflow_store.client()
    parent = create_run(client, tracking, mlflow_store.uri, name="multirun", tags={"jobs": "2"})
    finished = create_run(client, tracking, mlflow_store.uri, parent_run_id=parent)
    close_run(client, finished)
    create_run(client, tracking, mlflow_store.uri, parent_run_id=parent)
    close_parent_run(client, parent, "FINISHED")
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["jobs"] == "2"
    assert child_statuses(client, parent) == ["FINISHED", "RUNNING"]


@pytest.mark.parametrize("status", ["FAILED", "KILLED"])
def test_a_parent_run_that_ends_badly_closes_its_running_children_killed(mlflow_store, tracking, status):
    client = mlflow_store.client()
    parent = create_run(client, tracking, mlflow_store.uri, name="multirun", tags={})
    finished = create_run(client, tracking, mlflow_store.uri, parent_run_id=parent)
    close_run(client, finished)
    create_run(client, tracking, mlflow_store.uri, parent_run_id=parent)
    close_parent_run(client, parent, status)
    assert client.get_run(parent).info.status == status
    assert child_statuses(client, parent) == ["FINISHED", "KILLED"]
