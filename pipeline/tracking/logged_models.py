"""The final model as an MLflow LoggedModel (TensorFlow flavor), logged fast, and loaded back for evaluation."""

from __future__ import annotations

from importlib.metadata import version

import keras
import mlflow
import mlflow.tensorflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import Schema, TensorSpec

from pipeline.data import Dataset
from pipeline.errors import PipelineError

MODEL_NAME = "model"


def pip_requirements() -> list[str]:
    """Pinned explicitly: MLflow's default inference re-imports the model in a subprocess, for seconds."""
    return [f"tensorflow=={version('tensorflow')}", f"keras=={version('keras')}"]


def signature(data: Dataset) -> ModelSignature:
    """Images in, class probabilities out, as tensors built from shapes (no prediction needed). Unnamed:
    pyfunc then passes a plain array, which a Sequential model takes (a named one becomes a dict)."""
    images = TensorSpec(np.dtype(np.float32), (-1, *data.input_shape))
    probabilities = TensorSpec(np.dtype(np.float32), (-1, data.num_classes))
    return ModelSignature(inputs=Schema([images]), outputs=Schema([probabilities]))


def log_keras_model(model: keras.Model, data: Dataset, *, step: int, register_as: str | None) -> ModelInfo:
    """Log into the active run at `step` (metrics at that step link to it); register it if asked. No input example:
    MLflow would reload the saved model and predict it to check the example, work the run's own test scoring has
    just done; the signature describes the input."""
    return mlflow.tensorflow.log_model(
        model,
        name=MODEL_NAME,
        signature=signature(data),
        pip_requirements=pip_requirements(),
        registered_model_name=register_as,
        step=step,
    )


def load_logged_model(model_uri: str) -> tuple[keras.Model, str | None]:
    """A logged TensorFlow-flavor model and its LoggedModel id; a bad URI is one line naming it."""
    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception as error:  # noqa: BLE001 - MLflow raises many types for a bad or unreachable URI
        reason = " ".join(str(error).split())[:200]
        raise PipelineError(f"model={model_uri}: cannot find that model ({reason}); "
                            "pass models:/<name>/<version>, models:/<model id> or runs:/<run id>/model") from None
    if "tensorflow" not in info.flavors:
        raise PipelineError(f"model={model_uri}: not a TensorFlow model (flavors: {', '.join(info.flavors)})")
    return mlflow.tensorflow.load_model(model_uri), info.model_id
