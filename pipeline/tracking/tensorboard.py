"""`tracking.tensorboard`: TensorBoard logs of a run, written by Keras's own TensorBoard callback.

Both trainers drive Keras callbacks (pipeline.trainer), so one callback serves `fit` and the custom loop alike: the
epoch logs it writes are the ones MLflow records (tracking.epochs), learning rate and epoch time included. The logs
go to the run's folder (`tensorboard/train`, `tensorboard/validation`) and, when the run closes, to the MLflow run
as artifacts under the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from pipeline.config import MlflowTracking

FOLDER = "tensorboard"  # in the run's output folder and among its MLflow artifacts


class RunTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback with the epochs counted from 1, as MLflow's steps are (tracking.epochs), and
    writers that `close` also closes after a run stopped mid-training (Keras closes them only at on_train_end)."""

    def __init__(self, log_dir: Path, settings: MlflowTracking):
        super().__init__(log_dir=str(log_dir), histogram_freq=int(settings.tensorboard_histograms),
                         update_freq=settings.tensorboard_update_freq)
        self._training = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._training = True
        super().on_train_begin(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._training = False
        super().on_train_end(logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch + 1, logs)

    def close(self) -> None:
        """The event files complete, however training ended (an error, Ctrl-C: no on_train_end)."""
        if self._training:
            self.on_train_end()
