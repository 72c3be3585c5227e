"""Training: `trainer=fit` (Keras model.fit) and `trainer=custom` (a compiled tf.GradientTape loop).

Both read the same tf.data pipeline and drive the same Keras callbacks, so checkpoints, early stopping,
stop-on-NaN, tracking and pruning behave alike whichever trainer runs.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from pipeline import stop
from pipeline.config import TrainerSettings
from pipeline.data import Dataset
from pipeline.device import Placement
from pipeline.optimizer import current_learning_rate

def make_datasets(data: Dataset, batch_size: int, seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Shuffled training batches (seeded, reshuffled each epoch) and validation batches."""
    images, labels = tf.constant(data.x_train), tf.constant(data.y_train)
    # Shuffle indices and gather whole batches, as Keras does for NumPy input: far cheaper than
    # shuffling the images one by one.
    train = (
        tf.data.Dataset.range(len(data.x_train))
        .shuffle(len(data.x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda index: (tf.gather(images, index), tf.gather(labels, index)), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation = tf.data.Dataset.from_tensor_slices((data.x_val, data.y_val)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return train, validation


class EpochStats(keras.callbacks.Callback):
    """Adds `learning_rate` and `epoch_time` to the epoch logs; runs first, so every later callback sees them."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)
            logs["epoch_time"] = time.perf_counter() - self._started


class StopOnNaN(keras.callbacks.Callback):
    """Stops a diverged run at the end of the epoch. (Keras's TerminateOnNaN checks every batch, which
    costs a device-to-host sync per step; one check per epoch keeps training at full speed.)"""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True


class StopOnRequest(keras.callbacks.Callback):
    """Raises a pending SIGTERM before the next training step, where stopping is safe (see pipeline.stop).
    A batch-*begin* hook: an on_train_batch_end hook would make Keras turn every step's logs into floats,
    a device sync per step."""

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        stop.raise_if_requested()


def standard_callbacks(settings: TrainerSettings) -> list[keras.callbacks.Callback]:
    """The callbacks every run gets: epoch stats, stop on NaN, optional early stopping."""
    callbacks: list[keras.callbacks.Callback] = [EpochStats()]
    if settings.terminate_on_nan:
        callbacks.append(StopOnNaN())
    stopping = settings.early_stopping
    if stopping.enabled:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stopping.monitor, mode=stopping.mode, patience=stopping.patience, min_delta=stopping.min_delta
            )
        )
    return callbacks


def train(
    settings: TrainerSettings,
    model: keras.Model,
    data: Dataset,
    placement: Placement,
    callbacks: Sequence[keras.callbacks.Callback],
    *,
    seed: int,
    initial_epoch: int = 0,
) -> None:
    """Train a compiled model from `initial_epoch` to `settings.epochs`; callbacks see every epoch's logs.
    A SIGTERM stops it between two steps (KeyboardInterrupt)."""
    train_batches, val_batches = make_datasets(data, settings.batch_size, seed)
    with stop.deferred_during_training():
        TRAINERS[settings.name](
            settings, model, train_batches, val_batches, placement, [*callbacks, StopOnRequest()], initial_epoch
        )


def _fit(settings, model, train_batches, val_batches, placement, callbacks, initial_epoch) -> None:
    model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=settings.epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=settings.verbose,
        shuffle=False,  # the tf.data pipeline already shuffles, seeded
    )


def _custom(settings, model, train_batches, val_batches, placement, callbacks, initial_epoch) -> None:
    GradientTapeLoop(model, placement.strategy).fit(
        train_batches, val_batches, settings=settings, callbacks=callbacks, initial_epoch=initial_epoch
    )


TRAINERS: dict[str, Callable[..., None]] = {"fit": _fit, "custom": _custom}


class GradientTapeLoop:
    """The "training loop from scratch" of the Keras guides, compiled, and distributed when the strategy is."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy):
        self.model = model
        self.strategy = strategy
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
        with strategy.scope():
            self.train_loss = keras.metrics.Mean(name="loss")
            self.train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
            self.val_loss = keras.metrics.Mean(name="val_loss")
            self.val_accuracy = keras.metrics.SparseCategoricalAccuracy(name="val_accuracy")
        self.metrics = (self.train_loss, self.train_accuracy, self.val_loss, self.val_accuracy)
        self._train_step = self._compiled_train_step()
        self._evaluate = self._compiled_evaluation()

    def _compiled_train_step(self) -> Callable:
        # As in Keras's own trainer: XLA (compile's resolved jit_compile, on with a GPU) on the per-replica
        # step, and a graph function that pulls the next batch from the iterator itself.
        replica_step = tf.function(self._replica_train_step, jit_compile=bool(self.model.jit_compile))

        @tf.function
        def train_step(iterator):
            self.strategy.run(replica_step, args=next(iterator))
            return {"loss": self.train_loss.result(), "accuracy": self.train_accuracy.result()}

        return train_step

    def _compiled_evaluation(self) -> Callable:
        @tf.function
        def evaluate(batches):
            for x, y in batches:
                self.strategy.run(self._replica_test_step, args=(x, y))

        return evaluate

    def _replica_train_step(self, x, y) -> None:
        optimizer = self.model.optimizer
        with tf.GradientTape() as tape:
            probabilities = self.model(x, training=True)
            per_example = self.loss_fn(y, probabilities)
            # Average over the global batch, so gradients summed across replicas match one device.
            loss = tf.nn.compute_average_loss(per_example)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            scaled = optimizer.scale_loss(loss)  # identity unless mixed precision wraps a LossScaleOptimizer
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        self.train_loss.update_state(per_example)
        self.train_accuracy.update_state(y, probabilities)

    def _replica_test_step(self, x, y) -> None:
        probabilities = self.model(x, training=False)
        self.val_loss.update_state(self.loss_fn(y, probabilities))
        self.val_accuracy.update_state(y, probabilities)

    def fit(self, train_batches, val_batches, *, settings: TrainerSettings, callbacks, initial_epoch: int) -> None:
        steps = int(train_batches.cardinality())
        train_batches = self.strategy.experimental_distribute_dataset(train_batches)
        val_batches = self.strategy.experimental_distribute_dataset(val_batches)
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=settings.verbose != 0, model=self.model,
            verbose=settings.verbose, epochs=settings.epochs, steps=steps,
        )
        self.model.stop_training = False
        callback_list.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, settings.epochs):
            for metric in self.metrics:
                metric.reset_state()
            callback_list.on_epoch_begin(epoch)
            batches = iter(train_batches)
            for step in range(steps):
                callback_list.on_train_batch_begin(step)
                # The logs stay tensors: nothing waits for the device unless a callback reads them.
                callback_list.on_train_batch_end(step, self._train_step(batches))
                if self.model.stop_training:
                    break
            self._evaluate(val_batches)
            logs = {metric.name: float(metric.result()) for metric in self.metrics}
            callback_list.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callback_list.on_train_end(logs)
