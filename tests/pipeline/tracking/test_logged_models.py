"""The logged model: it loads with pyfunc and with TensorFlow, is registered, and carries its signature without an
input example."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from pipeline.config import PROJECT_ROOT


def test_the_logged_model_loads_with_pyfunc_and_tensorflow_and_is_registered(finished):
    import mlflow.pyfunc
    import mlflow.tensorflow

    store, result, run = finished
    (output,) = run.outputs.model_outputs
    images = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    mlflow.set_tracking_uri(store.uri)
    try:
        for model_uri in (f"models:/{output.model_id}", "models:/digits-mlp/1"):
            assert np.asarray(mlflow.pyfunc.load_model(model_uri).predict(images)).shape == (3, 10)
        keras_model = mlflow.tensorflow.load_model(f"models:/{output.model_id}")
        assert keras_model.predict(images, verbose=0).shape == (3, 10)
    finally:
        mlflow.set_tracking_uri(None)
    (version,) = store.client().search_model_versions("name='digits-mlp'")
    assert version.run_id == result.run_id


def test_the_logged_model_carries_its_signature_and_no_input_example(finished):
    """An input example would make MLflow reload the saved model and predict it while logging it."""
    import mlflow.models

    store, _, run = finished
    (output,) = run.outputs.model_outputs
    mlflow.set_tracking_uri(store.uri)
    try:
        info = mlflow.models.get_model_info(f"models:/{output.model_id}")
    finally:
        mlflow.set_tracking_uri(None)
    assert info.saved_input_example_info is None
    (images,) = info.signature.inputs.inputs
    (probabilities,) = info.signature.outputs.inputs
    assert (images.shape, probabilities.shape) == ((-1, 8, 8, 1), (-1, 10))


def test_what_logging_the_model_imports_first_loads_on_the_recording_thread_of_a_run_that_logs_one(tmp_path):
    """In a fresh process (this one has imported everything): a tracked run that logs its model imports what
    log_model needs on its recording thread, before the end; one that does not log a model imports nothing for it."""
    code = f"""
import sys
from pathlib import Path

from pipeline.compose import compose_config, validate
from pipeline.tracking import tracked_run
from pipeline.tracking.recording import FIRST_USE_MODULE

for log_model in (False, True):
    settings = validate(compose_config(["tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                                        f"tracking.log_model={{log_model}}", "tracking.system_metrics=false"]))
    with tracked_run(settings, overrides=[], output_dir=Path("{tmp_path}") / str(log_model)) as tracker:
        assert tracker.run_id
    assert (FIRST_USE_MODULE in sys.modules) is log_model, log_model
"""
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=120,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
