"""Configurable, tracked Keras training: Hydra configs -> data -> model -> trainer -> evaluation -> MLflow."""

import os

from pipeline.tf_import import prepare_tensorflow_import

# TensorFlow's C++ log after start-up (graph-attribute notices, CPU feature hints) drowns the run's own output;
# TF_CPP_MIN_LOG_LEVEL=0 brings it back, with what pipeline.tf_import hides.
prepare_tensorflow_import()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
