"""The two trainers are interchangeable, and both run on several devices and honour the shared callbacks."""

import math
import signal

import keras
import numpy as np
import pytest

from pipeline import stop, trainer
from pipeline.checkpoints import BEST, LAST, TrainingState
from pipeline.config import validate
from pipeline.core import run_pipeline
from pipeline.data import load_data
from pipeline.device import place
from pipeline.errors import PipelineError
from pipeline.model import build_model

NO_TRACKING = ["tracking=none"]


def run(compose, tmp_path, *overrides):
    return run_pipeline(compose(*NO_TRACKING, f"output_dir={tmp_path}", *overrides))


def test_fit_and_custom_give_the_same_training_loss_per_epoch(compose, tmp_path):
    same = ["deterministic=true", "trainer.epochs=3", "seed=7"]
    fit = run(compose, tmp_path / "fit", *same, "trainer=fit")
    custom = run(compose, tmp_path / "custom", *same, "trainer=custom")
    assert len(fit.history["loss"]) == len(custom.history["loss"]) == 3
    np.testing.assert_allclose(fit.history["loss"], custom.history["loss"], rtol=0.03)
    np.testing.assert_allclose(fit.history["val_loss"], custom.history["val_loss"], rtol=0.05)
    assert custom.history["loss"][-1] < custom.history["loss"][0]


@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_both_trainers_train_mirrored_over_two_logical_devices(compose, tmp_path, trainer):
    result = run(compose, tmp_path, f"trainer={trainer}", "device=multi_gpu", "device.cpu_replicas=2",
                 "trainer.epochs=3")
    assert len(result.devices) == 2
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.test_metrics["test_accuracy"] > 0.6


@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_epoch_logs_carry_learning_rate_and_time_and_checkpoints_are_written(compose, tmp_path, trainer):
    result = run(compose, tmp_path, f"trainer={trainer}", "optimizer.schedule=exponential", "optimizer.decay_rate=0.5")
    assert set(result.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time"}
    assert result.history["learning_rate"][1] == pytest.approx(result.history["learning_rate"][0] * 0.5)
    assert all(seconds > 0 for seconds in result.history["epoch_time"])
    checkpoint_dir = tmp_path / "checkpoints"
    assert (checkpoint_dir / BEST).exists() and (checkpoint_dir / LAST).exists()
    state = TrainingState.read(checkpoint_dir)
    assert state.epochs_done == 2 and state.best_value == max(result.history["val_accuracy"])


@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_early_stopping_ends_training_early(compose, tmp_path, trainer):
    # Patience 1 on a metric that cannot improve by 10 whole units stops after the second epoch.
    result = run(compose, tmp_path, f"trainer={trainer}", "trainer.epochs=6", "trainer.early_stopping.enabled=true",
                 "trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=10")
    assert len(result.history["loss"]) == 2


@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_a_diverging_run_stops_on_nan_and_fails_in_one_line(compose, tmp_path, trainer):
    with pytest.raises(PipelineError, match="training diverged: loss became nan in epoch 1; lower optimizer.learning_rate"):
        run(compose, tmp_path, f"trainer={trainer}", "optimizer=sgd", "optimizer.learning_rate=1e12", "trainer.epochs=5")
    state = TrainingState.read(tmp_path / "checkpoints")
    assert state.epochs_done == 1 and math.isnan(state.history["loss"][0])


@pytest.mark.parametrize("trainer_name", ["fit", "custom"])
def test_sigterm_during_training_stops_between_steps(compose, trainer_name):
    settings = validate(compose(f"trainer={trainer_name}", "trainer.epochs=50"))
    data = load_data(settings.data)
    model = build_model(settings.model, data.input_shape, data.num_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    steps: list[int] = []

    class SignalAtStepThree(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            steps.append(batch)
            if len(steps) == 3:
                stop.on_sigterm(signal.SIGTERM, None)  # noted, not raised inside Keras

    with pytest.raises(KeyboardInterrupt):
        trainer.train(settings.trainer, model, data, place(settings.device), [SignalAtStepThree()], seed=0)
    assert len(steps) == 3  # stopped right after the step it arrived in
    with pytest.raises(KeyboardInterrupt):  # outside training a SIGTERM still stops at once
        stop.on_sigterm(signal.SIGTERM, None)
