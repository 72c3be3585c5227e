"""Configurable, tracked Keras training: Hydra configs -> data -> model -> trainer -> evaluation -> MLflow."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, graph-attribute notices) drowns the run's own output;
# TF_CPP_MIN_LOG_LEVEL=0 brings it back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
