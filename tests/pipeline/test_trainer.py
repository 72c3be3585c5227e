"""The two trainers are interchangeable, and both run on several devices and honour the shared callbacks."""

import math
import signal

import keras
import numpy as np
import pytest

from pipeline import stop, trainer
from pipeline.checkpoints import BEST, LAST, TrainingState
from pipeline.compose import validate
from pipeline.core import run_pipeline
from pipeline.data import load_data
from pipeline.device import place
from pipeline.errors import PipelineError
from pipeline.model import build_model

NO_TRACKING = ["tracking=none"]


def run(compose, tmp_path, *overrides):
    return run_pipeline(validate(compose(*NO_TRACKING, f"output_dir={tmp_path}", *overrides)))


def test_fit_and_custom_give_the_same_training_loss_per_epoch(compose, tmp_path):
    same = ["deterministic=true", "trainer.epochs=3", "seed=7"]
    fit = run(compose, tmp_path / "fit", *same, "trainer=fit")
    custom = run(compose, tmp_path / "custom", *same, "trainer=custom")
    assert len(fit.history["loss"]) == len(custom.history["loss"]) == 3
    np.testing.assert_allclose(fit.history["loss"], custom.history["loss"], rtol=0.03)
    np.testing.assert_allclose(fit.history["val_loss"], custom.history["val_loss"], rtol=0.05)
    assert custom.history["loss"][-1] < custom.history["loss"][0]


@pytest.fixture
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_both_trainers_train_alike_under_mixed_precision(compose, tmp_path, precision, float32_after):
    """float16 scales the loss in both trainers (Keras wraps the optimizer at compile) and the custom loop's
    gradients are unscaled as fit's are: unscaled, they would be 2**15 times too large and the runs would part."""
    same = ["deterministic=true", "trainer.epochs=3", "seed=7", f"device.precision={precision}"]
    fit = run(compose, tmp_path / "fit", *same, "trainer=fit")
    custom = run(compose, tmp_path / "custom", *same, "trainer=custom")
    for result in (fit, custom):
        assert all(math.isfinite(loss) for loss in result.history["loss"])
        assert result.history["loss"][-1] < result.history["loss"][0]
        optimizer = keras.models.load_model(result.output_dir / "checkpoints" / LAST).optimizer
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) is (precision == "mixed_float16")
    np.testing.assert_allclose(fit.history["loss"], custom.history["loss"], rtol=0.05)
    assert custom.test_metrics["test_accuracy"] > 0.8


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
    diverged = "training diverged: loss became nan in epoch 1; lower optimizer.learning_rate"
    with pytest.raises(PipelineError, match=diverged):
        run(compose, tmp_path, f"trainer={trainer}", "optimizer=sgd", "optimizer.learning_rate=1e12",
            "trainer.epochs=5")
    state = TrainingState.read(tmp_path / "checkpoints")
    assert state.epochs_done == 1 and math.isnan(state.history["loss"][0])


@pytest.mark.parametrize("trainer_name", ["fit", "custom"])
def test_train_returns_the_history_of_the_whole_run_after_a_resumed_runs_earlier_epochs(compose, trainer_name):
    settings = validate(compose(f"trainer={trainer_name}", "trainer.epochs=3"))
    data = load_data(settings.data)
    placement = place(settings.device)
    model = build_model(settings.model, data.input_shape, data.num_classes)
    trainer.compile_model(settings.trainer, model, keras.optimizers.Adam(), placement)
    earlier = {"loss": [9.0], "accuracy": [0.1], "val_loss": [9.5], "val_accuracy": [0.2]}
    history = trainer.train(settings.trainer, model, data, placement, [], steps_per_execution=4, seed=0,
                            initial_epoch=1, earlier_history=earlier)
    assert set(history) == set(earlier)
    assert all(len(values) == 3 and values[0] == earlier[key][0] for key, values in history.items())
    assert history["loss"][2] < history["loss"][1] < 9.0
    assert earlier["loss"] == [9.0]  # the caller's history is not changed


@pytest.mark.parametrize("trainer_name", ["fit", "custom"])
@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_sigterm_during_training_stops_within_one_call(compose, trainer_name, steps_per_execution):
    settings = validate(compose(f"trainer={trainer_name}", "trainer.epochs=50"))
    data = load_data(settings.data)
    placement = place(settings.device)
    model = build_model(settings.model, data.input_shape, data.num_classes)
    trainer.compile_model(settings.trainer, model, keras.optimizers.Adam(), placement)
    calls: list[int] = []

    class SignalInThirdCall(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            calls.append(batch)
            if len(calls) == 3:
                stop.on_stop_signal(signal.SIGTERM, None)  # noted, not raised inside Keras

    with pytest.raises(KeyboardInterrupt):
        trainer.train(settings.trainer, model, data, placement, [SignalInThirdCall()],
                      steps_per_execution=steps_per_execution, seed=0)
    # One batch hook per call, at the call's first step; the request noted there stops before that call runs.
    assert calls == [0, steps_per_execution, 2 * steps_per_execution]
    assert int(model.optimizer.iterations) == 2 * steps_per_execution
    with stop.handled(), pytest.raises(KeyboardInterrupt):  # outside training a signal still stops at once
        stop.on_stop_signal(signal.SIGTERM, None)


@pytest.mark.parametrize("trainer_name", ["fit", "custom"])
def test_several_steps_per_call_give_the_same_epoch_metrics(compose, tmp_path, trainer_name):
    # 400 images in batches of 32: 13 steps an epoch, so 4 per call ends each epoch with a call of 1.
    same = ["deterministic=true", "seed=3", f"trainer={trainer_name}", "model.dropout=0.2"]
    one = run(compose, tmp_path / "one", *same, "trainer.steps_per_execution=1")
    four = run(compose, tmp_path / "four", *same, "trainer.steps_per_execution=4")
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(one.history[name], four.history[name], rtol=1e-6, err_msg=name)
    assert one.test_metrics == pytest.approx(four.test_metrics, rel=1e-6)


PROBED_EPOCHS = math.ceil(trainer.PROBE_MIN_RUN_STEPS / 50)  # the shortest run of 50-step epochs that auto probes


def _compiled_mlp(settings):
    """The model compiled with Adam under its placement, with its data, as a run has them before training."""
    data = load_data(settings.data)
    placement = place(settings.device)
    with placement.scope():
        model = build_model(settings.model, data.input_shape, data.num_classes)
        trainer.compile_model(settings.trainer, model, keras.optimizers.Adam(), placement)
    return model, data, placement


def test_auto_steps_per_execution_fills_about_half_a_second_and_trains_nothing(compose, monkeypatch):
    monkeypatch.setattr(trainer, "_probed", {})  # probe here, whatever earlier tests measured
    # 50 steps an epoch (400 images at 8), over enough epochs for the run to be probed
    settings = validate(compose("trainer.batch_size=8", f"trainer.epochs={PROBED_EPOCHS}"))
    model, data, placement = _compiled_mlp(settings)
    weights = [variable.numpy() for variable in model.variables]
    steps = trainer.resolve_steps_per_execution(settings.trainer, model, data, placement)
    # A small MLP steps in milliseconds: the cap, one epoch's 50 steps, wins.
    assert steps == 50
    assert int(model.optimizer.iterations) == 0
    for before, after in zip(weights, model.variables):
        np.testing.assert_array_equal(before, after.numpy())
    explicit = validate(compose("trainer.batch_size=8", "trainer.steps_per_execution=7")).trainer
    assert trainer.resolve_steps_per_execution(explicit, model, data, placement) == 7


def test_auto_takes_one_step_per_call_in_a_run_too_short_to_probe(compose, monkeypatch):
    monkeypatch.setattr(trainer, "_probed", {})
    settings = validate(compose("trainer.batch_size=8", f"trainer.epochs={PROBED_EPOCHS - 1}"))
    model, data, placement = _compiled_mlp(settings)
    assert trainer.resolve_steps_per_execution(settings.trainer, model, data, placement) == 1
    assert trainer._probed == {} and model.train_function is None  # nothing probed, nothing traced


@pytest.mark.parametrize(
    "override, expected",
    [
        ("trainer.steps_per_execution=0", "trainer.steps_per_execution=0: allowed: a positive integer or auto"),
        ("trainer.steps_per_execution=fast", "trainer.steps_per_execution='fast': allowed: a positive integer or auto"),
        ("trainer.jit_compile=maybe", "trainer.jit_compile='maybe': allowed: auto, true or false"),
    ],
)
def test_bad_steps_per_execution_or_jit_compile_is_named(compose, override, expected):
    with pytest.raises(PipelineError) as caught:
        validate(compose(override))
    assert str(caught.value) == expected


@pytest.mark.parametrize("jit_compile, expected", [("auto", False), ("true", True), ("false", False)])
def test_xla_is_used_only_on_a_gpu_unless_asked(compose, jit_compile, expected):
    settings = validate(compose("device=cpu", f"trainer.jit_compile={jit_compile}"))
    assert trainer.uses_xla(settings.trainer, place(settings.device)) is expected
