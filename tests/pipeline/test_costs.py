"""Every run's costs: measured after training, returned in its result and logged as MLflow metrics."""

import pytest

from pipeline.compose import validate
from pipeline.config import COST_METRICS
from pipeline.core import run_pipeline


def test_a_runs_costs_are_measured_returned_and_logged(compose, tmp_path, mlflow_store):
    small = run_pipeline(validate(compose(mlflow_store.override, "model.hidden_units=[8]",
                                          f"output_dir={tmp_path / 'a'}")))
    large = run_pipeline(validate(compose(mlflow_store.override, "model.hidden_units=[256]",
                                          f"output_dir={tmp_path / 'b'}")))
    assert set(small.costs) == set(COST_METRICS)
    assert small.costs["params"] == 64 * 8 + 8 + 8 * 10 + 10  # 8x8 digits, one hidden layer of 8, 10 classes
    assert large.costs["params"] > small.costs["params"]
    assert 0 < small.costs["model_size_mb"] < large.costs["model_size_mb"]
    assert small.costs["latency_ms"] > 0 and small.costs["train_seconds"] > 0
    logged = mlflow_store.client().get_run(small.run_id).data.metrics
    assert {name: logged[name] for name in COST_METRICS} == pytest.approx(small.costs)
