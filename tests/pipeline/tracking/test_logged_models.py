"""The logged model: it loads with pyfunc and with TensorFlow, and is registered."""

from __future__ import annotations

import numpy as np


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
