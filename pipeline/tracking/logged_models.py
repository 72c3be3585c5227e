"""The final model as an MLflow LoggedModel (TensorFlow flavor), logged fast, and loaded back for evaluation."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from importlib.metadata import version
from typing import Iterator

import keras
import mlflow
import mlflow.tensorflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.types import Schema, TensorSpec

from pipeline.data import Dataset
from pipeline.errors import PipelineError
from pipeline.inputs import split_images

MODEL_NAME = "model"
EXAMPLE_ROWS = 2


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
    """Log into the active run at `step` (metrics at that step link to it); register it if asked."""
    with _quiet_keras():  # MLflow reloads the model to check the input example; its progress bars are noise
        return mlflow.tensorflow.log_model(
            model,
            name=MODEL_NAME,
            signature=signature(data),
            input_example=split_images(data, "test", EXAMPLE_ROWS),
            pip_requirements=pip_requirements(),
            registered_model_name=register_as,
            step=step,
        )


@contextmanager
def _quiet_keras() -> Iterator[None]:
    """Keras's progress bars off: with interactive logging off they go to absl's logger, held to warnings here."""
    interactive = keras.config.is_interactive_logging_enabled()
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    keras.config.disable_interactive_logging()
    absl_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        absl_logger.setLevel(level)
        if interactive:
            keras.config.enable_interactive_logging()


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
