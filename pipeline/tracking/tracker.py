"""The interface the core records a run through; this base class is tracking=none (every method does nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: a config error's path imports this module, and no NumPy or data readers
    import keras
    import numpy as np

    from pipeline.data import Dataset


class RunTracker:
    """tracking=none: the core calls the same methods whether or not MLflow records the run."""

    run_id: str | None = None
    records = False  # whether anything is recorded (so worth computing, as the grid of training examples)

    def epoch_callbacks(self) -> list[keras.callbacks.Callback]:
        """What records each epoch (MLflow's metrics, TensorBoard's logs); they run after the trainer's own."""
        return []

    def log_datasets(self, data: Dataset) -> None:
        pass

    def log_training_examples(self, images: np.ndarray) -> None:
        pass

    def fetch_checkpoints(self, into: Path) -> bool:
        return False

    def log_missing_epochs(self, history: dict[str, list[float]]) -> None:
        """A resumed run's checkpointed epochs (`history`, Keras's log keys) that the run lacks: its process was
        killed after an epoch's checkpoint, before that epoch's metrics were written."""

    def log_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_results(self, *, model: keras.Model, data: Dataset, history: dict[str, list[float]],
                    test_metrics: dict[str, float], y_pred: np.ndarray, artifacts: bool = True) -> str | None:
        """Test metrics and reports; with `artifacts`, also the model and plots. Returns the model's id."""
        return None
