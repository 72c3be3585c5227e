import math

import keras
import numpy as np
import pytest

from pipeline.compose import compose_config, validate
from pipeline.config import CONF_DIR
from pipeline.errors import PipelineError
from pipeline.optimizer import build_optimizer, current_learning_rate


def optimizer_settings(name: str, *overrides: str):
    return validate(compose_config([f"optimizer={name}", *overrides])).optimizer


def sgd_step(optimizer: keras.optimizers.Optimizer, variable: keras.Variable) -> float:
    """One real update with gradient 1; with plain SGD the variable moves by exactly the LR in effect."""
    before = float(variable.numpy())
    optimizer.apply_gradients([(keras.ops.ones_like(variable), variable)])
    return before - float(variable.numpy())


@pytest.mark.parametrize(
    "name, overrides, optimizer_class, hyperparameters",
    [
        ("sgd", ["optimizer.momentum=0.8", "optimizer.nesterov=true"], keras.optimizers.SGD,
         {"momentum": 0.8, "nesterov": True}),
        ("rmsprop", ["optimizer.rho=0.8", "optimizer.momentum=0.5"], keras.optimizers.RMSprop,
         {"rho": 0.8, "momentum": 0.5}),
        ("adam", ["optimizer.beta_1=0.85", "optimizer.beta_2=0.99"], keras.optimizers.Adam,
         {"beta_1": 0.85, "beta_2": 0.99}),
        ("adamw", ["optimizer.weight_decay=0.01", "optimizer.beta_1=0.8", "optimizer.beta_2=0.95"],
         keras.optimizers.AdamW, {"weight_decay": 0.01, "beta_1": 0.8, "beta_2": 0.95}),
    ],
)
def test_each_name_builds_its_keras_optimizer_with_the_configured_values(
    name, overrides, optimizer_class, hyperparameters
):
    settings = optimizer_settings(name, "optimizer.learning_rate=0.005", *overrides)

    optimizer = build_optimizer(settings, steps_per_epoch=10, epochs=2)

    assert type(optimizer) is optimizer_class
    assert {key: getattr(optimizer, key) for key in hyperparameters} == pytest.approx(hyperparameters)
    assert current_learning_rate(optimizer) == pytest.approx(0.005)


@pytest.mark.parametrize("name", sorted(path.stem for path in (CONF_DIR / "optimizer").glob("*.yaml")))
@pytest.mark.parametrize("schedule", ["constant", "cosine", "exponential"])
def test_every_optimizer_config_builds_with_every_schedule(name, schedule):
    optimizer = build_optimizer(optimizer_settings(name, f"optimizer.schedule={schedule}"), 5, 3)
    variable = keras.Variable(np.ones(2, dtype="float32"))

    optimizer.apply_gradients([(keras.ops.ones_like(variable), variable)])

    assert type(optimizer).__name__.lower() == name
    assert np.all(variable.numpy() < 1.0)


def test_constant_learning_rate_is_used_at_every_step():
    optimizer = build_optimizer(optimizer_settings("sgd", "optimizer.learning_rate=0.1"), steps_per_epoch=2, epochs=2)
    variable = keras.Variable(5.0)

    moves = [sgd_step(optimizer, variable) for _ in range(4)]

    assert moves == pytest.approx([0.1] * 4, rel=1e-5)
    assert current_learning_rate(optimizer) == pytest.approx(0.1)


def test_cosine_decays_to_zero_over_the_whole_run():
    steps_per_epoch, epochs, learning_rate = 3, 2, 0.1
    settings = optimizer_settings("sgd", f"optimizer.learning_rate={learning_rate}", "optimizer.schedule=cosine")
    optimizer = build_optimizer(settings, steps_per_epoch, epochs)
    variable = keras.Variable(5.0)
    total = steps_per_epoch * epochs

    for step in range(total):
        expected = learning_rate * 0.5 * (1 + math.cos(math.pi * step / total))
        assert current_learning_rate(optimizer) == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert sgd_step(optimizer, variable) == pytest.approx(expected, rel=1e-4, abs=1e-6)

    assert current_learning_rate(optimizer) == pytest.approx(0.0, abs=1e-7)


def test_exponential_multiplies_by_decay_rate_once_per_epoch():
    steps_per_epoch, learning_rate, decay_rate = 3, 0.1, 0.5
    settings = optimizer_settings(
        "sgd", f"optimizer.learning_rate={learning_rate}", "optimizer.schedule=exponential",
        f"optimizer.decay_rate={decay_rate}",
    )
    optimizer = build_optimizer(settings, steps_per_epoch, epochs=3)
    variable = keras.Variable(5.0)

    moves = [sgd_step(optimizer, variable) for _ in range(3 * steps_per_epoch)]

    expected = [learning_rate * decay_rate ** (step // steps_per_epoch) for step in range(3 * steps_per_epoch)]
    assert moves == pytest.approx(expected, rel=1e-4)
    assert current_learning_rate(optimizer) == pytest.approx(learning_rate * decay_rate**3)


def test_current_learning_rate_sees_through_the_mixed_precision_wrapper():
    settings = optimizer_settings("adam", "optimizer.learning_rate=0.01", "optimizer.schedule=exponential")
    inner = build_optimizer(settings, steps_per_epoch=1, epochs=5)
    wrapped = keras.optimizers.LossScaleOptimizer(inner)
    variable = keras.Variable(np.ones(2, dtype="float32"))

    before = current_learning_rate(wrapped)
    wrapped.apply_gradients([(keras.ops.ones_like(variable), variable)])

    assert before == pytest.approx(0.01)
    assert current_learning_rate(wrapped) == pytest.approx(0.01 * 0.9)


@pytest.mark.parametrize("steps_per_epoch, epochs", [(0, 3), (4, 0)])
def test_an_empty_run_is_a_one_line_error(steps_per_epoch, epochs):
    with pytest.raises(PipelineError, match=f"steps_per_epoch={steps_per_epoch}, epochs={epochs}"):
        build_optimizer(optimizer_settings("adam", "optimizer.schedule=cosine"), steps_per_epoch, epochs)


def test_unknown_schedule_is_a_one_line_error_naming_the_choices():
    with pytest.raises(PipelineError, match=r"^optimizer\.schedule='linear': .*'constant', 'cosine' or 'exponential'"):
        optimizer_settings("adam", "optimizer.schedule=linear")
