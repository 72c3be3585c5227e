"""The logged model: it loads with pyfunc and with TensorFlow, and is registered."""

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


def test_what_logging_the_model_imports_first_loads_on_a_thread_as_training_begins():
    """In a fresh process (this one has imported everything): the run's epoch logger starts the import as training
    begins, and a process that has the module starts nothing."""
    code = """
import sys
import threading

from pipeline.tracking.logged_models import FIRST_USE_MODULE, load_while_training
from pipeline.tracking.mlflow_tracker import RunEpochLogger

assert FIRST_USE_MODULE not in sys.modules
RunEpochLogger(writer=None).on_train_begin()
for thread in threading.enumerate():
    if thread.name == "mlflow-model-logging":
        thread.join()
assert FIRST_USE_MODULE in sys.modules
assert load_while_training() is None
"""
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=120,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
