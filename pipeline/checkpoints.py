"""Best and last checkpoints (`.keras`) plus the state a resumed run continues from."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from pipeline.config import CheckpointSettings

BEST = "best.keras"
LAST = "last.keras"
STATE = "state.json"


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights: where it stopped and what it has seen so far."""

    epochs_done: int = 0
    best_value: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def read(cls, checkpoint_dir: Path) -> "TrainingState":
        return cls(**json.loads((checkpoint_dir / STATE).read_text()))

    def write(self, checkpoint_dir: Path) -> None:
        (checkpoint_dir / STATE).write_text(json.dumps(self.__dict__, indent=1))


def checkpoint_callbacks(
    checkpoint_dir: Path, settings: CheckpointSettings, state: TrainingState
) -> list[keras.callbacks.Callback]:
    """Save the best model by the monitored metric, the last one, and the state file, every epoch."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best = keras.callbacks.ModelCheckpoint(
        checkpoint_dir / BEST,
        monitor=settings.monitor,
        mode=settings.mode,
        save_best_only=True,
        initial_value_threshold=state.best_value,  # a resumed run keeps a better earlier checkpoint
    )
    last = keras.callbacks.ModelCheckpoint(checkpoint_dir / LAST)
    return [best, last, _StateWriter(checkpoint_dir, settings, state)]


class _StateWriter(keras.callbacks.Callback):
    def __init__(self, checkpoint_dir: Path, settings: CheckpointSettings, state: TrainingState):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.settings = settings
        self.state = state

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        for key, value in logs.items():
            self.state.history.setdefault(key, []).append(float(value))
        value = logs.get(self.settings.monitor)
        if value is not None and math.isfinite(value) and self._improves(float(value)):
            self.state.best_value = float(value)
        self.state.epochs_done = epoch + 1
        self.state.write(self.checkpoint_dir)

    def _improves(self, value: float) -> bool:
        best = self.state.best_value
        return best is None or (value > best if self.settings.mode == "max" else value < best)
