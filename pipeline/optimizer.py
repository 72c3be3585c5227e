"""Keras optimizers and learning-rate schedules of `conf/optimizer/`."""

from __future__ import annotations

from typing import Callable, TypeAlias

import keras

from pipeline.config import OptimizerSettings
from pipeline.errors import PipelineError

OPTIMIZERS: dict[str, type[keras.optimizers.Optimizer]] = {
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
}

# Every other field of an optimizer schema is named exactly as the Keras keyword argument it sets.
SCHEDULE_FIELDS = {"name", "learning_rate", "schedule", "decay_rate"}

LearningRate: TypeAlias = float | keras.optimizers.schedules.LearningRateSchedule


def _constant(settings: OptimizerSettings, steps_per_epoch: int, epochs: int) -> LearningRate:
    return settings.learning_rate


def _cosine(settings: OptimizerSettings, steps_per_epoch: int, epochs: int) -> LearningRate:
    """From learning_rate down to 0 at the last step of training."""
    return keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=steps_per_epoch * epochs)


def _exponential(settings: OptimizerSettings, steps_per_epoch: int, epochs: int) -> LearningRate:
    """Multiplied by decay_rate once per epoch, not a little at every step."""
    return keras.optimizers.schedules.ExponentialDecay(
        settings.learning_rate, decay_steps=steps_per_epoch, decay_rate=settings.decay_rate, staircase=True
    )


SCHEDULES: dict[str, Callable[[OptimizerSettings, int, int], LearningRate]] = {
    "constant": _constant,
    "cosine": _cosine,
    "exponential": _exponential,
}


def build_optimizer(settings: OptimizerSettings, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """The configured optimizer; schedules count optimizer steps, so they need the run's length."""
    if steps_per_epoch < 1 or epochs < 1:
        raise PipelineError(
            f"optimizer={settings.name} needs at least 1 training step per epoch and 1 epoch, "
            f"got steps_per_epoch={steps_per_epoch}, epochs={epochs} (is the training split empty?)"
        )
    learning_rate = SCHEDULES[settings.schedule](settings, steps_per_epoch, epochs)
    hyperparameters = settings.model_dump(exclude=SCHEDULE_FIELDS)
    return OPTIMIZERS[settings.name](learning_rate=learning_rate, **hyperparameters)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the next step will use: a schedule evaluated at the optimizer's step count.

    Also right for the LossScaleOptimizer that mixed precision wraps around the configured one.
    """
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
