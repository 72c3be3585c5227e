"""An evaluation of a logged model on a dataset, recorded as its own MLflow run."""

from __future__ import annotations

import time

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from pipeline.config import MlflowTracking
from pipeline.data import Dataset
from pipeline.tracking.datasets import log_dataset_inputs
from pipeline.tracking.lifecycle import process_tracking_uri
from pipeline.tracking.runs import create_run
from pipeline.tracking.store import tracking_uri

EVALUATED_MODEL = "evaluated_model"


def record_evaluation(tracking: MlflowTracking, *, model_uri: str, model_id: str | None, data: Dataset,
                      data_params: dict[str, object], metrics: dict[str, float]) -> str:
    """A FINISHED run tagged with the model's URI; its metrics also link to the LoggedModel when known."""
    uri = tracking_uri(tracking)
    client = MlflowClient(uri)
    run_id = create_run(client, tracking, uri, name=f"evaluate-{data.source}-{model_uri.split('/')[-1]}")
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(name, value, now, 0, model_id=model_id) for name, value in metrics.items()],
        params=[Param(f"data.{key}", str(value)) for key, value in data_params.items()],
        tags=[RunTag(EVALUATED_MODEL, model_uri), RunTag("data.source", data.source)],
    )
    with process_tracking_uri(uri), mlflow.start_run(run_id=run_id):  # ends FINISHED
        log_dataset_inputs(data, ("test",))
    return run_id
