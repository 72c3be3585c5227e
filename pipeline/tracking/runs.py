"""MLflow runs of every kind are created here, in the project's experiment: a training run (whose own life,
from recording its config to closing as it ended, is `lifecycle.mlflow_run`'s), a multirun's or a sweep's parent,
an evaluation. The runs that are not a training's active run are also re-opened and closed here (parents, a dead
worker's trial). No Keras: entry points that train nothing (sweep launchers, pipeline.evaluate) use it too.
Tags are stored with their passwords masked.
"""

from __future__ import annotations

from typing import Mapping

from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.config import MlflowTracking
from pipeline.credentials import redact
from pipeline.errors import PipelineError
from pipeline.tracking.store import artifact_location

# MLflow's run statuses as its client takes them.
RUNNING = RunStatus.to_string(RunStatus.RUNNING)
FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
KILLED = RunStatus.to_string(RunStatus.KILLED)
STUDY_TAG = "optuna.study"  # a sweep's parent run and its trials' runs: the study's name
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
            assert experiment is not None  # the other process's
    if experiment.lifecycle_stage == "deleted":
        raise PipelineError(f"tracking.experiment={tracking.experiment}: that experiment is deleted in {uri}; "
                            "restore it (mlflow experiments restore) or choose another name")
    return experiment.experiment_id


def create_run(client: MlflowClient, tracking: MlflowTracking, uri: str, *, name: str | None = None,
               tags: Mapping[str, str] | None = None, parent_run_id: str | None = None) -> str:
    """A new RUNNING run in tracking.experiment (nested under `parent_run_id`); its id."""
    tags = {**(tags or {}), **({MLFLOW_PARENT_RUN_ID: parent_run_id} if parent_run_id else {})}
    run = client.create_run(experiment_id(client, tracking, uri), run_name=name,
                            tags={key: redact(str(value)) for key, value in tags.items()})
    return run.info.run_id


def reopen_run(client: MlflowClient, run_id: str) -> None:
    """A closed run RUNNING again (a resumed sweep's parent)."""
    client.update_run(run_id, status=RUNNING)


def close_run(client: MlflowClient, run_id: str, status: str = FINISHED) -> None:
    client.set_terminated(run_id, status)


def close_parent_run(client: MlflowClient, run_id: str, status: str) -> None:
    """A run that only groups others ends as they did: FINISHED, or FAILED or KILLED, when a child still RUNNING
    (its process was killed with a launcher's pool) is closed KILLED."""
    if status != FINISHED:
        _kill_running_children(client, client.get_run(run_id).info.experiment_id, run_id)
    close_run(client, run_id, status)


def _kill_running_children(client: MlflowClient, experiment: str, parent_run_id: str) -> None:
    running = client.search_runs(
        [experiment],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}' and attributes.status = '{RUNNING}'")
    for child in running:
        close_run(client, child.info.run_id, KILLED)
