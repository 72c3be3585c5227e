"""The pipeline as one function: config in, trained and evaluated model (and its MLflow run) out.

The CLI's jobs (`pipeline.jobs`) and the sweep objective both call `run_pipeline` with validated settings; this
module imports TensorFlow, so entry points import it only once the config and the data have been checked.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import warnings
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import keras

from pipeline import checkpoint_files, checkpoints, device, inputs, stop, tracking, trainer
from pipeline.config import Settings
from pipeline.costs import measure_costs
from pipeline.data import Dataset, load_data
from pipeline.errors import PipelineError
from pipeline.model import build_model, unfreeze
from pipeline.optimizer import build_optimizer
from pipeline.scoring import Evaluation, evaluate_model

# Given a finished run's per-epoch history and metrics (test metrics and costs): whether to log its model and plots.
ArtifactFilter = Callable[[dict[str, list[float]], dict[str, float]], bool]


@dataclass(frozen=True)
class RunResult:
    settings: Settings
    history: dict[str, list[float]]  # per epoch, the whole run (a resumed run includes its earlier epochs)
    test_metrics: dict[str, float]
    costs: dict[str, float]  # config.COST_METRICS: params, model_size_mb, latency_ms, train_seconds
    devices: tuple[str, ...]
    output_dir: Path
    run_id: str | None  # MLflow run id; None with tracking=none
    model_id: str | None  # the MLflow LoggedModel (models:/<id>); None when no model was logged


@dataclass(frozen=True)
class RunOptions:
    """What a caller adds to a run beyond its settings."""

    overrides: Sequence[str] = ()  # the command line the settings came from: the run's provenance and resume check
    # Get every epoch's logs (loss, accuracy, val_loss, val_accuracy, learning_rate, epoch_time) from either
    # trainer; one may raise `TrainingStopped` to end the run on purpose (a pruned trial).
    callbacks: Sequence[keras.callbacks.Callback] = ()
    parent_run_id: str | None = None  # the MLflow run this one nests under: a sweep's or a multirun's
    run_tags: Mapping[str, str] = field(default_factory=dict)
    # May skip the model and plots of a run not worth keeping (a sweep keeps its best trials'); never the metrics.
    log_artifacts_if: ArtifactFilter | None = None
    # Called with the MLflow run's id as soon as it is recorded, before training (not with tracking=none, nor on a
    # multi-worker run's other workers): a sweep maps its trial to the run before a kill can leave it unmapped.
    on_run_start: Callable[[str], None] | None = None


def run_pipeline(settings: Settings, options: RunOptions = RunOptions()) -> RunResult:
    """Load data, build, train (fit or custom loop) on the configured devices, evaluate, record. A Ctrl-C or SIGTERM
    stops it at a safe point (pipeline.stop): its callers defer from before they import TensorFlow."""
    with stop.deferred():
        placement = device.place(settings.device)
        with _output_dir(settings, placement) as output_dir:
            return _run(settings, placement, output_dir, options)


def _run(settings: Settings, placement: device.Placement, output_dir: Path, options: RunOptions) -> RunResult:
    checkpoint_dir = output_dir / checkpoint_files.FOLDER
    device.seed_everything(settings.seed, settings.deterministic)
    data, augment, model = _data_and_model(settings, placement)  # before the run is recorded
    stop.raise_if_requested()  # a Ctrl-C while the data loaded or the network was built: no run recorded
    with _tracked_run(settings, placement, output_dir, options) as tracker:
        if options.on_run_start and tracker.run_id:  # waits for the run to open; the CLI's runs train meanwhile
            options.on_run_start(tracker.run_id)
        _log_inputs(tracker, settings, data, augment)
        state = _resume_state(settings, tracker, checkpoint_dir)
        tracker.log_missing_epochs(state.history)
        model = _compiled_model(settings=settings, model=model, data=data, placement=placement, state=state,
                                checkpoint_dir=checkpoint_dir)
        started = time.perf_counter()
        history = _train(settings, model, data, placement, state=state, augment=augment, tracker=tracker,
                         callbacks=options.callbacks, checkpoint_dir=checkpoint_dir)
        train_seconds = time.perf_counter() - started  # this run's share, when it resumed another
        evaluation = _evaluate(settings, model, data, checkpoint_dir)
        costs = measure_costs(model, data, train_seconds, checkpoint_dir / checkpoint_files.LAST)
        model_id = _log_results(tracker, options, model=model, data=data, history=history, evaluation=evaluation,
                                costs=costs)
        stop.raise_if_requested()  # a Ctrl-C while it was scored or recorded: the run closes KILLED, as it says
    (output_dir / "metrics.json").write_text(json.dumps(evaluation.metrics, indent=2))
    return RunResult(settings, history, evaluation.metrics, costs, placement.devices, output_dir, tracker.run_id,
                     model_id)


def _data_and_model(settings: Settings, placement: device.Placement) -> tuple[Dataset, keras.Model | None, keras.Model]:
    """The data (a disk or memory cache decodes here), the augmentation and the network: built before the run is
    recorded, so a network or augmentation that cannot work records nothing."""
    data = inputs.without_undecodable(load_data(settings.data))
    augment = inputs.augmentation(settings.data, data.input_shape, settings.seed)
    with placement.scope():
        model = build_model(settings.model, data.input_shape, data.num_classes)
    return data, augment, model


def _tracked_run(settings: Settings, placement: device.Placement, output_dir: Path,
                 options: RunOptions) -> AbstractContextManager[tracking.RunTracker]:
    return tracking.tracked_run(
        settings, overrides=options.overrides, output_dir=output_dir, parent_run_id=options.parent_run_id,
        tags={**placement.run_tags(), **options.run_tags}, record=placement.is_chief,
    )


def _log_inputs(tracker: tracking.RunTracker, settings: Settings, data: Dataset, augment: keras.Model | None) -> None:
    tracker.log_datasets(data)
    if augment is not None and tracker.records:
        tracker.log_training_examples(inputs.training_examples(data, augment, settings.seed))


def _train(settings: Settings, model: keras.Model, data: Dataset, placement: device.Placement, *,
           state: checkpoints.TrainingState, augment: keras.Model | None, tracker: tracking.RunTracker,
           callbacks: Sequence[keras.callbacks.Callback], checkpoint_dir: Path) -> dict[str, list[float]]:
    """Train from where `state` stopped (epoch 0 for a new run) through each phase (the head, then fine-tuning when
    trainer.fine_tune asks); the whole run's per-epoch history. The callbacks span the phases: the epochs, the
    metrics' steps and the best checkpoint continue across them."""
    run_callbacks = trainer.training_callbacks(
        settings.trainer, checkpoint_dir, state, [*tracker.epoch_callbacks(), *callbacks], augment,
    )
    state.restore_random_state(model, augment)
    history, first_epoch, first_step = state.history, state.epochs_done, state.epoch_steps
    model_phase = state.phase if state.started else 1  # whose trainable layers and optimizer the model has
    for phase, end_epoch in _phases(settings):
        if end_epoch <= first_epoch:
            continue
        if phase > model_phase:
            _start_fine_tuning(settings, model, data, placement)
            model_phase = phase
        steps_per_execution = trainer.resolve_steps_per_execution(settings.trainer, model, data, placement)
        tracker.log_tags({"steps_per_execution": str(steps_per_execution)})  # auto, resolved (the last phase's)
        print(f"Training {model.name} ({model.count_params():,} parameters"
              + (f", {_trainable_parameters(model):,} trainable" if settings.trainer.fine_tunes else "")
              + f") {placement.describe()}, trainer={settings.trainer.name}, {steps_per_execution} steps per call, "
              f"epochs {first_epoch + 1}..{end_epoch}"
              + (f", epoch {first_epoch + 1} from step {first_step + 1}" if first_step else "")
              + (f" (phase {phase} of 2)" if settings.trainer.fine_tunes else ""))
        history = trainer.train(
            settings.trainer, model, data, placement, run_callbacks,
            steps_per_execution=steps_per_execution, seed=settings.seed, end_epoch=end_epoch,
            initial_epoch=first_epoch, initial_step=first_step, earlier_history=history, augment=augment,
        )
        _check_finite(history)
        if model.stop_training:  # early stopping (or a callback) ends the run, in either phase
            break
        first_epoch, first_step = end_epoch, 0
    return history


def _phases(settings: Settings) -> list[tuple[int, int]]:
    """(phase, the epoch it ends at): the head alone, then fine-tuning."""
    epochs = settings.trainer
    return [(1, epochs.epochs)] + ([(2, epochs.total_epochs)] if epochs.fine_tunes else [])


def _start_fine_tuning(settings: Settings, model: keras.Model, data: Dataset, placement: device.Placement) -> None:
    """Unfreeze the backbone and compile again with a fresh optimizer of the configured kind at the fine-tuning rate
    (its schedule, if any, over the fine-tuning epochs), as Keras's guide does."""
    fine_tune = settings.trainer.fine_tune
    unfrozen = unfreeze(model, fine_tune)
    with placement.scope():
        optimizer = build_optimizer(settings.optimizer.model_copy(update={"learning_rate": fine_tune.learning_rate}),
                                    trainer.steps_in_epoch(data, settings.trainer.batch_size), fine_tune.epochs)
        trainer.compile_model(settings.trainer, model, optimizer, placement)
    print(f"Fine-tuning: {unfrozen} of the backbone's layers unfrozen, a fresh {settings.optimizer.name} at "
          f"learning rate {fine_tune.learning_rate:g}")


def _trainable_parameters(model: keras.Model) -> int:
    return sum(int(math.prod(variable.shape)) for variable in model.trainable_variables)


def _evaluate(settings: Settings, model: keras.Model, data: Dataset, checkpoint_dir: Path) -> Evaluation:
    if settings.trainer.checkpoint.evaluate == "best" and (checkpoint_dir / checkpoint_files.BEST).exists():
        with warnings.catch_warnings():  # a best epoch of phase 1 has the head's optimizer: only weights are tested
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(checkpoint_dir / checkpoint_files.BEST)  # as a user reloads a save_best_only checkpoint
    # One step per predict call, whatever training used: Keras unrolls a predict call's steps into its graph (fit and
    # evaluate loop over them), so its trace grows with them and outweighs the calls it saves.
    model.steps_per_execution = 1
    model.make_predict_function(force=True)
    return evaluate_model(model, data, settings.trainer.batch_size)


def _log_results(tracker: tracking.RunTracker, options: RunOptions, *, model: keras.Model, data: Dataset,
                 history: dict[str, list[float]], evaluation: Evaluation, costs: dict[str, float]) -> str | None:
    """The test metrics and costs always; the model and plots unless `options.log_artifacts_if` says no. The
    model's id."""
    metrics = {**evaluation.metrics, **costs}
    keep_artifacts = options.log_artifacts_if is None or options.log_artifacts_if(history, metrics)
    return tracker.log_results(model=model, data=data, history=history, test_metrics=metrics,
                               y_pred=evaluation.y_pred, artifacts=keep_artifacts)


@contextmanager
def _output_dir(settings: Settings, placement: device.Placement) -> Iterator[Path]:
    """The run's folder; a multi-worker run's other workers get a scratch folder instead, removed at the end
    (the chief keeps the checkpoints, metrics and model)."""
    cluster = placement.cluster
    if cluster is not None and not cluster.is_chief:  # not placement.is_chief, with the cluster narrowed
        scratch = Path(tempfile.mkdtemp(prefix="kerastrack-worker-"))
        print(f"{cluster.describe()}: worker 0 records the run; this worker's checkpoints go to "
              f"{scratch}, removed at the end")
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    if settings.output_dir:
        path = Path(settings.output_dir).expanduser().resolve()
    else:
        now = datetime.now()  # the layout of conf/config.yaml's hydra.run.dir, for callers outside the CLI
        path = Path("outputs").resolve() / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S-%f")
    path.mkdir(parents=True, exist_ok=True)
    yield path


def _resume_state(settings: Settings, tracker: tracking.RunTracker, checkpoint_dir: Path) -> checkpoints.TrainingState:
    if not settings.resume:
        return checkpoints.TrainingState()
    if not tracker.fetch_checkpoints(checkpoint_dir) or not (checkpoint_dir / checkpoint_files.LAST).exists():
        raise PipelineError(f"resume={settings.resume}: that run has no last checkpoint to continue from")
    state = checkpoints.TrainingState.read(checkpoint_dir)
    if state.epochs_done >= settings.trainer.total_epochs:
        more = "trainer.fine_tune.epochs" if settings.trainer.fine_tunes else "trainer.epochs"
        raise PipelineError(
            f"resume={settings.resume}: the run already trained {state.epochs_done} epoch(s); "
            f"raise {more} so that the run has more than {state.epochs_done} to continue it"
        )
    if state.phase == 2 and (not settings.trainer.fine_tunes or state.epochs_done < settings.trainer.epochs):
        raise PipelineError(f"resume={settings.resume}: that run was fine-tuning its backbone at epoch "
                            f"{state.epochs_done + 1}; resume it with its trainer.fine_tune and trainer.epochs")
    return state


def _compiled_model(*, settings: Settings, model: keras.Model, data: Dataset, placement: device.Placement,
                    state: checkpoints.TrainingState, checkpoint_dir: Path) -> keras.Model:
    with placement.scope():
        if state.started:
            if state.phase == 2:  # killed while fine-tuning: the checkpoint's optimizer covers the unfrozen layers
                unfreeze(model, settings.trainer.fine_tune)
            _resume_into(model, checkpoint_dir / checkpoint_files.LAST, state.precision, settings, placement)
            return model
        steps_per_epoch = trainer.steps_in_epoch(data, settings.trainer.batch_size)
        optimizer = build_optimizer(settings.optimizer, steps_per_epoch, settings.trainer.epochs)
        trainer.compile_model(settings.trainer, model, optimizer, placement)
        return model


def _resume_into(model: keras.Model, checkpoint: Path, saved_precision: str, settings: Settings,
                 placement: device.Placement) -> None:
    """Compile `model`, built under this run's precision, with the checkpoint's weights and optimizer (its
    configuration, schedule and state), so that training continues where it stopped. Not the loaded model itself:
    its layers keep the precision they were saved with, which a resumed run may change (variables are float32
    under every policy). The checkpoint is loaded under the policy it was saved under: Keras wraps the optimizer
    in a LossScaleOptimizer on loading under mixed_float16 only, and skips optimizer state that does not fit."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(saved_precision)
    try:
        saved = keras.models.load_model(checkpoint)
    finally:
        keras.config.set_dtype_policy(policy)
    saved_optimizer = _unscaled(saved.optimizer)
    trainer.compile_model(settings.trainer, model, keras.optimizers.deserialize(
        keras.optimizers.serialize(saved_optimizer)), placement)  # wrapped again under mixed_float16
    model.set_weights(saved.get_weights())
    model.optimizer.build(model.trainable_variables)
    source, target = saved.optimizer, model.optimizer
    if type(source) is not type(target):  # float16's loss scaling switched on or off: it starts afresh
        source, target = saved_optimizer, _unscaled(target)
    for variable, value in zip(target.variables, source.variables, strict=True):
        variable.assign(value)


def _unscaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    return optimizer.inner_optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else optimizer


def _check_finite(history: dict[str, list[float]]) -> None:
    losses = history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise PipelineError(
            f"training diverged: loss became {losses[-1]} in epoch {len(losses)}; lower optimizer.learning_rate"
        )
