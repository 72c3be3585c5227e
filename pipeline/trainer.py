"""Training: `trainer=fit` (Keras model.fit) and `trainer=custom` (a compiled tf.GradientTape loop).

This module owns what both share: the compiled loss and metrics, the callbacks, XLA and the steps per compiled
call. Both read the same tf.data pipeline and drive the same Keras callbacks, so checkpoints, early stopping,
stop-on-NaN, tracking and pruning behave alike whichever trainer runs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import tensorflow as tf

from pipeline import inputs, stop
from pipeline.checkpoints import TrainingState, checkpoint_callbacks
from pipeline.config import EPOCH_STATS, TrainerSettings
from pipeline.data import Dataset
from pipeline.device import Placement
from pipeline.errors import PipelineError
from pipeline.optimizer import current_learning_rate

# The pipeline's task, for both trainers: integer class labels against softmax probabilities.
LOSS = "sparse_categorical_crossentropy"
METRICS = ["accuracy"]
CALL_SECONDS = 0.5  # steps_per_execution=auto: the time one compiled call aims at
CLUSTER_STEPS_PER_EXECUTION = 16  # auto on device=multi_worker: a SIGTERM still stops all workers within 16 steps
PROBE_STEPS, PROBE_SECONDS = 10, 0.2  # at most, for auto's timing probe (after one step that traces)
# auto probes only a run of at least this many training steps: the probe traces a step function of its own, which
# in a shorter run of a CNN costs more than batching its calls saves (benchmarks/steps_per_call.py); a shorter run
# takes one step per call, Keras's default.
PROBE_MIN_RUN_STEPS = 200

class EpochStats(keras.callbacks.Callback):
    """Adds `learning_rate`, `epoch_time` and, in a run that fine-tunes, its `phase` (1 on the head, 2 fine-tuning)
    to the epoch logs; runs first, so every later callback sees them."""

    def __init__(self, settings: TrainerSettings):
        super().__init__()
        self.settings = settings

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            learning_rate, epoch_time, phase = EPOCH_STATS
            logs[learning_rate] = current_learning_rate(self.model.optimizer)
            logs[epoch_time] = time.perf_counter() - self._started
            if self.settings.fine_tunes:
                logs[phase] = float(self.settings.phase(epoch))


class StopOnNaN(keras.callbacks.Callback):
    """Stops a diverged run at the end of the epoch. (Keras's TerminateOnNaN checks every batch, which
    costs a device-to-host sync per step; one check per epoch keeps training at full speed.)"""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.model.stop_training = True


class StopOnRequest(keras.callbacks.Callback):
    """Raises a pending SIGTERM before the next compiled call (`steps_per_execution` steps), where stopping is safe
    (see pipeline.stop). A batch-*begin* hook: an on_train_batch_end hook would make Keras turn every call's logs into
    floats, a device sync per call. On a multi-worker run the workers agree before each call (one all-reduce of a
    flag), so a SIGTERM to any of them stops all of them at the same step, none left waiting for the others."""

    def __init__(self, placement: Placement):
        super().__init__()
        self._cluster_strategy = placement.strategy if placement.cluster else None

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self._cluster_strategy is not None and self._requested_on_any_worker(self._cluster_strategy):
            stop.request()
        stop.raise_if_requested()

    @staticmethod
    def _requested_on_any_worker(strategy: tf.distribute.Strategy) -> bool:
        flag = tf.constant(float(stop.requested()))
        return float(strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: flag), axis=None)) > 0


def training_callbacks(
    settings: TrainerSettings, checkpoint_dir: Path, state: TrainingState, extra: Sequence[keras.callbacks.Callback],
    augment: keras.Model | None = None,
) -> list[keras.callbacks.Callback]:
    """Every run's callbacks, in order: epoch stats, stop on NaN, optional early stopping, checkpoints, then
    `extra` (tracking, a sweep's pruning), so that these see the epoch logs the first ones completed."""
    callbacks: list[keras.callbacks.Callback] = [EpochStats(settings)]
    if settings.terminate_on_nan:
        callbacks.append(StopOnNaN())
    stopping = settings.early_stopping
    if stopping.enabled:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stopping.monitor, mode=stopping.mode, patience=stopping.patience, min_delta=stopping.min_delta
            )
        )
    return [*callbacks, *checkpoint_callbacks(checkpoint_dir, settings.checkpoint, state, augment, settings.phase),
            *extra]


def compile_model(settings: TrainerSettings, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                  placement: Placement) -> None:
    """The one place the loss and metrics are chosen: `trainer=custom` reads them from the compiled model.
    Call inside `placement.scope()`."""
    model.compile(optimizer=optimizer, loss=LOSS, metrics=METRICS, jit_compile=uses_xla(settings, placement))


def uses_xla(settings: TrainerSettings, placement: Placement) -> bool:
    if settings.jit_compile != "auto":
        return settings.jit_compile
    # On a CPU XLA made these networks slower (README, Speed); on a GPU it fuses kernels.
    return any("GPU" in device.upper() for device in placement.devices)


def resolve_steps_per_execution(settings: TrainerSettings, model: keras.Model, data: Dataset,
                                placement: Placement) -> int:
    """trainer.steps_per_execution, `auto` resolved: as many steps as take about CALL_SECONDS, from a probe's
    step time; never more than an epoch's steps (conf/trainer/fit.yaml explains the rule)."""
    steps_per_epoch = steps_in_epoch(data, settings.batch_size)
    if settings.steps_per_execution != "auto":
        return min(settings.steps_per_execution, steps_per_epoch)
    if steps_per_epoch * settings.total_epochs < PROBE_MIN_RUN_STEPS:
        return 1
    if placement.cluster:  # no probe: Keras's train_on_batch fails under the multi-worker strategy, and every
        return min(steps_per_epoch, CLUSTER_STEPS_PER_EXECUTION)  # worker must run the same steps per call
    return max(1, min(steps_per_epoch, round(CALL_SECONDS / _step_seconds(model, data, settings.batch_size))))


def steps_in_epoch(data: Dataset, batch_size: int) -> int:
    return math.ceil(len(data.train) / batch_size)


# Probed step times by what sets them, so that a sweep worker's trials of one network probe once (a probe costs
# a trace and up to PROBE_SECONDS).
_probed: dict[tuple, float] = {}


def _step_seconds(model: keras.Model, data: Dataset, batch_size: int) -> float:
    key = (model.count_params(), len(model.layers), len(model.trainable_variables), data.input_shape, batch_size,
           type(model.optimizer).__name__, bool(model.jit_compile), model.distribute_strategy.num_replicas_in_sync,
           model.dtype_policy.name)
    if key not in _probed:
        _probed[key] = _probe_step_seconds(model, data, batch_size)
    return _probed[key]


def _probe_step_seconds(model: keras.Model, data: Dataset, batch_size: int) -> float:
    """Seconds per training step, one step per call, on the first training batch; the model's weights, the
    optimizer's state and the dropout seeds are put back afterwards, so the probe trains nothing."""
    x, y = inputs.split_images(data, "train", batch_size), data.train.labels[:batch_size]
    with model.distribute_strategy.scope():
        model.optimizer.build(model.trainable_variables)  # a no-op once built (a resumed model)
    state = [*model.variables, *model.optimizer.variables]
    saved = [variable.numpy() for variable in state]
    model.train_on_batch(x, y)  # traces the step
    steps, started = 0, time.perf_counter()
    while steps < PROBE_STEPS and time.perf_counter() - started < PROBE_SECONDS:
        model.train_on_batch(x, y)  # returns floats: each call waits for its step
        steps += 1
    seconds = (time.perf_counter() - started) / steps
    for variable, value in zip(state, saved):
        variable.assign(value)
    model.reset_metrics()
    return seconds


def train(
    settings: TrainerSettings,
    model: keras.Model,
    data: Dataset,
    placement: Placement,
    callbacks: Sequence[keras.callbacks.Callback],
    *,
    steps_per_execution: int,
    seed: int,
    end_epoch: int | None = None,
    initial_epoch: int = 0,
    initial_step: int = 0,
    earlier_history: Mapping[str, list[float]] | None = None,
    augment: keras.Sequential | None = None,
) -> dict[str, list[float]]:
    """Train a compiled model from `initial_epoch` (its first `initial_step` steps already trained: a run resumed
    inside it) up to `end_epoch` (a phase's end; by default `settings.epochs`), `steps_per_execution` steps per
    compiled call; callbacks see every epoch's logs.
    Returns the run's per-epoch logs (Keras's History): `earlier_history`, a resumed run's first `initial_epoch`
    epochs, then this call's. A SIGTERM stops it between two calls (KeyboardInterrupt). An image file that fails to
    decode mid-epoch ends it with a one-line error naming the file (the last checkpoint stays)."""
    # A run resumed inside an epoch reads that epoch's remaining batches first, then whole epochs.
    resumed_batches = inputs.training_batches(data, settings.batch_size, seed, augment, first_epoch=initial_epoch,
                                              skip_batches=initial_step) if initial_step else None
    train_batches = inputs.training_batches(data, settings.batch_size, seed, augment,
                                            first_epoch=initial_epoch + bool(initial_step))
    val_batches = inputs.evaluation_batches(data, "validation", settings.batch_size)
    # What compile(steps_per_execution=N) sets; both trainers read it (fit's train and test functions are
    # rebuilt, as the probe may have built them for one step per call).
    model.steps_per_execution = steps_per_execution
    model.make_train_function(force=True)
    model.make_test_function(force=True)
    with stop.deferred():
        try:
            history = TRAINERS[settings.name](
                settings=settings, model=model, train_batches=train_batches, val_batches=val_batches,
                placement=placement, callbacks=[*callbacks, StopOnRequest(placement)], initial_epoch=initial_epoch,
                end_epoch=settings.epochs if end_epoch is None else end_epoch, resumed_batches=resumed_batches,
            )
        except tf.errors.InvalidArgumentError:
            bad = data.image_files and (inputs.undecodable_file(data, data.train)
                                        or inputs.undecodable_file(data, data.validation))
            if not bad:
                raise
            raise PipelineError(f"{bad}: TensorFlow cannot decode this image (found mid-training; the last checkpoint "
                                "is kept); fix or remove it, or set data.skip_bad_images=true "
                                "to skip such files") from None
    earlier = earlier_history or {}
    return {key: [*earlier.get(key, []), *history.get(key, [])] for key in {**earlier, **history}}


def _fit(*, settings, model, train_batches, val_batches, placement, callbacks, initial_epoch, end_epoch,
         resumed_batches) -> dict[str, list[float]]:
    def fit(batches: tf.data.Dataset, first_epoch: int, end_epoch: int) -> dict[str, list[float]]:
        steps = int(batches.cardinality())
        return model.fit(
            batches,
            validation_data=val_batches,
            # Given, Keras reads one shuffled order per epoch (as the custom loop does), so a resumed run's epoch k
            # is the uninterrupted run's; unknown when bad images are skipped.
            steps_per_epoch=steps if steps > 0 else None,
            epochs=end_epoch,
            initial_epoch=first_epoch,
            callbacks=callbacks,
            verbose=settings.verbose,
            shuffle=False,  # the tf.data pipeline already shuffles, seeded
        ).history

    history: dict[str, list[float]] = {}
    if resumed_batches is not None:
        build_training_variables(model, placement.strategy, val_batches)
        # Keras's fit has no public way to start inside an epoch: the rest of it is one fit call of its own
        # (callbacks see a second on_train_begin, which Keras's own callbacks allow for).
        history = fit(resumed_batches, initial_epoch, initial_epoch + 1)
        initial_epoch += 1
        if model.stop_training or initial_epoch == end_epoch:
            return history
    rest = fit(train_batches, initial_epoch, end_epoch)
    return {key: [*history.get(key, []), *rest.get(key, [])] for key in {**history, **rest}}


def _custom(*, settings, model, train_batches, val_batches, placement, callbacks, initial_epoch, end_epoch,
            resumed_batches) -> dict[str, list[float]]:
    return GradientTapeLoop(model, placement.strategy, train_batches, val_batches).fit(
        train_batches, val_batches, settings=settings, callbacks=callbacks, initial_epoch=initial_epoch,
        end_epoch=end_epoch, resumed_batches=resumed_batches,
    )


TRAINERS: dict[str, Callable[..., dict[str, list[float]]]] = {"fit": _fit, "custom": _custom}


def build_training_variables(model: keras.Model, strategy: tf.distribute.Strategy,
                             val_batches: tf.data.Dataset) -> None:
    """Create the optimizer's and metrics' variables up front, in the strategy's scope (not in a replica): the custom
    loop's graph needs them, and a run resumed inside an epoch puts its metrics' totals back before the first step.
    From a validation batch: iterating the training batches would advance their seeded shuffle by an epoch."""
    x, y = next(iter(val_batches))
    with strategy.scope():
        model.optimizer.build(model.trainable_variables)
        y_pred = model(x[:1], training=False)
        for metric in model.metrics[1:]:  # after the loss's running mean, which has no build step
            if not metric.built:
                metric.build(y[:1], y_pred)


class GradientTapeLoop:
    """The "training loop from scratch" of the Keras guides, compiled, and distributed when the strategy is.
    The loss, metrics, optimizer, XLA and steps per call are the compiled model's (see `compile_model`)."""

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy, train_batches: tf.data.Dataset,
                 val_batches: tf.data.Dataset):
        self.model = model
        self.strategy = strategy
        self.epoch_steps = int(train_batches.cardinality())  # negative when unknown (bad images skipped)
        # model.metrics: the loss's running mean (Keras's tracker, "loss"), then the compiled metrics.
        self.loss_tracker, *self.compiled_metrics = model.metrics
        build_training_variables(model, strategy, val_batches)
        self._train_steps = self._compiled_train_steps()
        self._evaluate = self._compiled_evaluation()

    def _compiled_train_steps(self) -> Callable:
        # As in Keras's own trainer: XLA (compile's jit_compile) on the per-replica step, and a graph function
        # that pulls its batches from the iterator itself, `steps` of them per call.
        replica_step = tf.function(self._replica_train_step, jit_compile=bool(self.model.jit_compile))

        @tf.function
        def train_steps(iterator, steps):
            done = tf.constant(0)
            for _ in tf.range(steps):
                if self.epoch_steps > 0:
                    self.strategy.run(replica_step, args=next(iterator))
                else:  # the epoch's length is unknown (bad images are skipped): it ends when the batches do
                    batch = iterator.get_next_as_optional()
                    if not batch.has_value():
                        break
                    self.strategy.run(replica_step, args=batch.get_value())
                done += 1
            return done, self._results()

        return train_steps

    def _compiled_evaluation(self) -> Callable:
        @tf.function
        def evaluate(batches):
            for x, y in batches:
                self.strategy.run(self._replica_test_step, args=(x, y))

        return evaluate

    def _replica_train_step(self, x, y) -> None:
        model, optimizer = self.model, self.model.optimizer
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            # The compiled loss plus regularization, divided by the replica count, so that the gradients summed
            # across replicas match one device.
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
            scaled = optimizer.scale_loss(loss)  # identity unless mixed precision wraps a LossScaleOptimizer
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        self._update_metrics(x, y, y_pred, loss)

    def _replica_test_step(self, x, y) -> None:
        y_pred = self.model(x, training=False)
        self._update_metrics(x, y, y_pred, self.model.compute_loss(x=x, y=y, y_pred=y_pred, training=False))

    def _update_metrics(self, x, y, y_pred, loss) -> None:
        # The running mean is per image, as in fit: each batch's (unscaled) loss weighted by its size.
        self.loss_tracker.update_state(loss * self.strategy.num_replicas_in_sync, sample_weight=tf.shape(x)[0])
        for metric in self.compiled_metrics:
            metric.update_state(y, y_pred)

    def _results(self) -> dict[str, tf.Tensor]:
        results = {}
        for metric in self.model.metrics:
            result = metric.result()
            results.update(result if isinstance(result, dict) else {metric.name: result})
        return results

    def fit(self, train_batches, val_batches, *, settings: TrainerSettings, callbacks, initial_epoch: int,
            end_epoch: int, resumed_batches: tf.data.Dataset | None = None) -> dict[str, list[float]]:
        """Train from `initial_epoch` up to `end_epoch`; the first one's batches are `resumed_batches` when given (the
        rest of an epoch a run resumes inside); returns this call's per-epoch logs, as model.fit's History has them."""
        steps = self.epoch_steps
        # Across workers, each takes its share of every global batch (the row dataset has no files to shard).
        sharding = tf.data.Options()
        sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

        def distributed(batches: tf.data.Dataset) -> tf.distribute.DistributedDataset:
            return self.strategy.experimental_distribute_dataset(batches.with_options(sharding))

        resumed_steps = steps if resumed_batches is None else int(resumed_batches.cardinality())
        train_batches = distributed(train_batches)
        resumed_batches = None if resumed_batches is None else distributed(resumed_batches)
        val_batches = self.strategy.experimental_distribute_dataset(val_batches)
        callback_list = keras.callbacks.CallbackList(
            callbacks, add_history=True, add_progbar=settings.verbose != 0, model=self.model,
            verbose=settings.verbose, epochs=end_epoch, steps=steps if steps > 0 else None,
        )
        self.model.stop_training = False
        callback_list.on_train_begin()
        logs: dict[str, float] = {}
        for epoch in range(initial_epoch, end_epoch):
            self.model.reset_metrics()  # before the callbacks, as in fit: a resumed epoch's writer restores them
            callback_list.on_epoch_begin(epoch)
            resumed = epoch == initial_epoch and resumed_batches is not None
            logs = {**self._train_epoch(resumed_batches if resumed else train_batches,
                                        resumed_steps if resumed else steps, callback_list),
                    **self._validate(val_batches)}
            callback_list.on_epoch_end(epoch, logs)
            if self.model.stop_training:
                break
        callback_list.on_train_end(logs)
        return self.model.history.history  # CallbackList(add_history=True) set its History on the model

    def _train_epoch(self, train_batches, steps: int, callback_list: keras.callbacks.CallbackList) -> dict[str, float]:
        """One pass over the training batches (`steps` of them, negative when unknown), `steps_per_execution` per
        call; the epoch's training logs. Batch indices count this pass's steps, as in a fit call."""
        batches, done = iter(train_batches), 0
        while not self.model.stop_training and (steps < 0 or done < steps):
            calls = self.model.steps_per_execution if steps < 0 else min(self.model.steps_per_execution, steps - done)
            # As in fit, the batch callbacks (progress bar, stop request) run once per call, with its last step's
            # index; the logs stay tensors, so nothing waits for the device unless a callback reads them.
            callback_list.on_train_batch_begin(done)
            ran, call_logs = self._train_steps(batches, tf.constant(calls))
            ran = calls if steps > 0 else int(ran)  # of unknown length, the epoch ends with a short call
            if ran:
                done += ran
                callback_list.on_train_batch_end(done - 1, call_logs)
            if ran < calls:
                break
        return {name: float(value) for name, value in self._results().items()}

    def _validate(self, val_batches) -> dict[str, float]:
        self.model.reset_metrics()
        self._evaluate(val_batches)
        return {f"val_{name}": float(value) for name, value in self._results().items()}
