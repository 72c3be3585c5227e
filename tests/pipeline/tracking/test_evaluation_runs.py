"""An evaluation recorded as its own FINISHED run in a real SQLite store, its metrics linked to the model."""

import numpy as np
import pytest

from pipeline.data import Dataset
from pipeline.data.splits import whole
from pipeline.tracking.evaluation_runs import EVALUATED_MODEL, record_evaluation
from pipeline.tracking.runs import experiment_id
from tests.pipeline.tracking.conftest import settings_for


def tiny_dataset() -> Dataset:
    rng = np.random.default_rng(0)

    def split(n: int):
        return whole(rng.integers(0, 2, n).astype(np.int32), pixels=rng.integers(0, 256, (n, 4, 4, 1), np.uint8))

    return Dataset("npz", split(6), split(2), split(3), ("zero", "one"), input_shape=(4, 4, 1))


@pytest.mark.parametrize("with_model", [True, False])
def test_an_evaluation_is_a_finished_run_with_its_metrics_data_and_model(mlflow_store, with_model):
    tracking = settings_for(mlflow_store.override).tracking
    client = mlflow_store.client()
    model_id = (client.create_logged_model(experiment_id(client, tracking, mlflow_store.uri)).model_id
                if with_model else None)
    run_id = record_evaluation(tracking, model_uri="models:/m-123", model_id=model_id, data=tiny_dataset(),
                               data_params={"name": "npz", "max_test_samples": 3},
                               metrics={"test_accuracy": 0.75, "test_loss": 0.5})
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "evaluate-npz-m-123"
    assert run.data.metrics == {"test_accuracy": 0.75, "test_loss": 0.5}
    assert run.data.params == {"data.name": "npz", "data.max_test_samples": "3"}
    assert run.data.tags[EVALUATED_MODEL] == "models:/m-123" and run.data.tags["data.source"] == "npz"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "npz-test" and {tag.value for tag in dataset.tags} == {"test"}
    if with_model:
        linked = {metric.key: metric.value for metric in client.get_logged_model(model_id).metrics}
        assert linked == {"test_accuracy": 0.75, "test_loss": 0.5}
