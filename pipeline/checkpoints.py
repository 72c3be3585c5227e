"""Best and last checkpoints (`.keras`) plus the state a resumed run continues from."""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras

from pipeline.checkpoint_files import BEST, LAST, STATE, commit, settle, temporary
from pipeline.config import CheckpointSettings


@dataclass
class TrainingState:
    """What a resumed run needs besides the weights: where it stopped and what it has seen so far."""

    epochs_done: int = 0
    # Steps of epoch `epochs_done` already trained, from a checkpoint inside it (trainer.checkpoint.every); 0 when
    # the checkpoint is an epoch's end.
    epoch_steps: int = 0
    best_value: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    # The random generators of the model (dropout) and of data.augment at the epoch's end: Keras's .keras files
    # do not keep them, and a resumed run draws what the uninterrupted run would have. Inside an epoch: the model's
    # at the checkpoint, data.augment's at the epoch's start (the resumed epoch augments its skipped batches again).
    random_state: list[list[int]] = field(default_factory=list)
    # Inside an epoch: the training metrics' variables (model.metrics_variables) so far, so that the resumed epoch's
    # loss and accuracy cover all of its steps.
    metric_state: list[Any] = field(default_factory=list)
    # The dtype policy the checkpoints were saved under (device.precision resolved); see core._resume_into.
    precision: str = "float32"
    # The phase last.keras was trained in (trainer.fine_tune: 2 once the backbone is unfrozen): its trainable layers
    # and its optimizer are that phase's.
    phase: int = 1

    @property
    def started(self) -> bool:
        """Whether there is training to continue (a whole epoch or part of one)."""
        return bool(self.epochs_done or self.epoch_steps)

    def restore_random_state(self, model: keras.Model, augment: keras.Model | None) -> None:
        if self.random_state:
            for variable, value in zip(random_variables(model, augment), self.random_state, strict=True):
                variable.assign(value)

    @classmethod
    def read(cls, checkpoint_dir: Path) -> "TrainingState":
        return cls(**json.loads((checkpoint_dir / STATE).read_text()))

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)


def random_variables(model: keras.Model, augment: keras.Model | None) -> list[keras.Variable]:
    """The seed generators' states (keras.random.SeedGenerator) of the model's layers and the augmentation's."""
    augment_variables = augment.variables if augment is not None else []
    return [*_seed_states(model.non_trainable_variables), *_seed_states(augment_variables)]


def _seed_states(variables: list[keras.Variable]) -> list[keras.Variable]:
    return [variable for variable in variables if variable.path.endswith("seed_generator_state")]


def checkpoint_callbacks(
    checkpoint_dir: Path, settings: CheckpointSettings, state: TrainingState, augment: keras.Model | None = None,
    phase_of: Callable[[int], int] = lambda epoch: 1,
) -> list[keras.callbacks.Callback]:
    """Save the last model, the best one by the monitored metric (from either phase), and the state file, every
    epoch. `state`, what the run resumed from (empty for a new run), is not changed: the writer continues a copy of
    it. `phase_of(epoch)`: the training phase of an epoch (TrainerSettings.phase)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    settle(checkpoint_dir)  # a folder reused after a kill: its half save must not pass for this run's
    return [_CheckpointWriter(checkpoint_dir, settings, state, augment, phase_of)]


class _CheckpointWriter(keras.callbacks.Callback):
    """Each save writes its files under temporary names and commits them (checkpoint_files.commit): a run killed
    mid-save, by SIGKILL too, keeps its previous complete checkpoint, or this one once checkpoint_files.settle ran.

    With `every` in steps or minutes, last.keras and the state are also written inside an epoch, checked before
    each compiled call (a batch-begin hook, which costs no device sync; see trainer.StopOnRequest): `batch` there is
    the steps the call's epoch has run in this process, which start after the resumed steps in a resumed epoch."""

    def __init__(self, checkpoint_dir: Path, settings: CheckpointSettings, state: TrainingState,
                 augment: keras.Model | None, phase_of: Callable[[int], int]):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.settings = settings
        self.state = copy.deepcopy(state)
        self.augment = augment
        self.phase_of = phase_of
        self._epoch = state.epochs_done
        self._resumed_steps = self._saved_step = 0
        self._saved_at = time.monotonic()
        self._augment_at_epoch_start: list[list[int]] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        # The state says steps of this epoch only when the run resumes inside it (an epoch's end resets them).
        self._resumed_steps = self._saved_step = self.state.epoch_steps if epoch == self.state.epochs_done else 0
        self._saved_at = time.monotonic()
        if self._resumed_steps and self.state.metric_state:  # both trainers reset the metrics before this hook
            for variable, value in zip(self.model.metrics_variables, self.state.metric_state, strict=True):
                variable.assign(value)
        if self.settings.every != "epoch" and self.augment is not None:
            self._augment_at_epoch_start = _values(_seed_states(self.augment.variables))

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        steps, seconds = self.settings.every_steps, self.settings.every_seconds
        step = self._resumed_steps + batch
        if step > self._saved_step and ((steps is not None and step - self._saved_step >= steps)
                                        or (seconds is not None and time.monotonic() - self._saved_at >= seconds)):
            self.state.epoch_steps = step
            self.state.metric_state = _values(self.model.metrics_variables)
            self._save(_values(random_variables(self.model, None)) + self._augment_at_epoch_start)
            self._saved_step, self._saved_at = step, time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        for key, value in logs.items():
            self.state.history.setdefault(key, []).append(float(value))
        value = logs.get(self.settings.monitor)
        improves = False
        if value is not None and math.isfinite(value) and self._improves(float(value)):
            self.state.best_value, improves = float(value), True
        self.state.epochs_done, self.state.epoch_steps, self.state.metric_state = epoch + 1, 0, []
        self._save(_values(random_variables(self.model, self.augment)), best=improves)

    def _save(self, random_state: list[list[int]], *, best: bool = False) -> None:
        """last.keras, with `best` best.keras too, and the state, as one save."""
        folder = self.checkpoint_dir
        self.model.save(temporary(folder, LAST))
        if best:  # the model just saved: a file copy, not a second serialization of every weight
            shutil.copyfile(temporary(folder, LAST), temporary(folder, BEST))
        self.state.precision = self.model.dtype_policy.name
        self.state.phase = self.phase_of(self._epoch)
        self.state.random_state = random_state
        temporary(folder, STATE).write_text(self.state.to_json())
        commit(folder)

    def _improves(self, value: float) -> bool:
        best = self.state.best_value
        return best is None or (value > best if self.settings.mode == "max" else value < best)


def _values(variables: list[keras.Variable]) -> list[Any]:
    return [variable.numpy().tolist() for variable in variables]
