"""Experiments and the runs that only group others: MLflow's side without Keras, for entry points that train nothing."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.config import MlflowTracking
from pipeline.credentials import redact
from pipeline.errors import PipelineError
from pipeline.tracking.store import artifact_location, check_store, tracking_uri

EXPERIMENT_KIND = "mlflow.experimentKind"  # the UI opens a model-training experiment in its "Model training" view


def experiment_id(client: MlflowClient, tracking: MlflowTracking, uri: str) -> str:
    """tracking.experiment's id, created on first use with its artifacts beside a SQLite store."""
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        try:
            return client.create_experiment(tracking.experiment, artifact_location=artifact_location(uri),
                                            tags={EXPERIMENT_KIND: "custom_model_development"})
        except MlflowException as error:  # another process (a parallel sweep trial) created it first
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment.lifecycle_stage == "deleted":
        raise PipelineError(f"tracking.experiment={tracking.experiment}: that experiment is deleted in {uri}; "
                            "restore it (mlflow experiments restore) or choose another name")
    return experiment.experiment_id


@contextmanager
def parent_run(tracking: MlflowTracking, *, name: str, tags: Mapping[str, str]) -> Iterator[str]:
    """A run that only groups others (a multirun's jobs name it as their parent); it ends as they did:
    FINISHED, FAILED on an exception, KILLED on Ctrl-C or SIGTERM. A child still RUNNING then (its process was
    killed with a launcher's pool) is closed KILLED."""
    uri = tracking_uri(tracking)
    assert uri is not None
    check_store(uri)
    client = MlflowClient(uri)
    run = client.create_run(experiment_id(client, tracking, uri), run_name=name,
                            tags={key: redact(value) for key, value in tags.items()})
    status = "KILLED"
    try:
        yield run.info.run_id
        status = "FINISHED"
    except Exception:
        status = "FAILED"
        raise
    finally:
        if status != "FINISHED":
            _kill_running_children(client, run.info.experiment_id, run.info.run_id)
        client.set_terminated(run.info.run_id, status)


def _kill_running_children(client: MlflowClient, experiment: str, parent_run_id: str) -> None:
    running = client.search_runs(
        [experiment], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and attributes.status = 'RUNNING'")
    for child in running:
        client.set_terminated(child.info.run_id, "KILLED")
