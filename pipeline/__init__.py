"""Configurable, tracked Keras training: Hydra configs -> data -> model -> trainer -> evaluation -> MLflow."""

import os

from pipeline.tf_log import hide_tensorflow_noise

# TensorFlow's C++ log after start-up (graph-attribute notices, CPU feature hints) drowns the run's own output;
# TF_CPP_MIN_LOG_LEVEL=0 brings it back, with what pipeline.tf_log hides.
hide_tensorflow_noise()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
