"""Configurable, tracked Keras training: Hydra configs -> data -> model -> trainer -> evaluation -> MLflow."""

import os

from pipeline.startup_log import hide_tensorflow_start_up

# TensorFlow's C++ log after start-up (graph-attribute notices, CPU feature hints) drowns the run's own output;
# TF_CPP_MIN_LOG_LEVEL=0 brings it back, and with its start-up lines (pipeline.startup_log).
hide_tensorflow_start_up()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
