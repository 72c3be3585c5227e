import subprocess
import sys

import keras
import numpy as np
import pytest

from pipeline.config import PROJECT_ROOT, compose_config, validate
from pipeline.errors import PipelineError
from pipeline.model import build_model, check_input

MNIST = (28, 28, 1)
DIGITS = (8, 8, 1)


def model_settings(name: str, *overrides: str):
    return validate(compose_config([f"model={name}", *overrides])).model


def spatial_side_after_last_block(model: keras.Model) -> tuple[int, int]:
    """Height and width of the last 4-D feature map, i.e. what the convolutions left."""
    feature_maps = [layer.output.shape for layer in model.layers if len(layer.output.shape) == 4]
    return feature_maps[-1][1:3]


@pytest.mark.parametrize(
    "name, input_shape",
    [("mlp", MNIST), ("mlp", DIGITS), ("small_cnn", MNIST), ("basic_cnn", MNIST), ("small_cnn", (32, 32, 3))],
)
def test_builds_a_named_softmax_classifier_for_the_input(name, input_shape):
    model = build_model(model_settings(name), input_shape, num_classes=10)

    probabilities = model(np.random.default_rng(0).random((3, *input_shape), dtype="float32"))

    assert model.name == name
    assert model.input_shape == (None, *input_shape)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(keras.ops.sum(probabilities, axis=1), np.ones(3), rtol=1e-5)


def test_small_cnn_has_the_8648_parameters_of_the_reference_model():
    model = build_model(model_settings("small_cnn", "model.filters=[12,24,26]"), MNIST, num_classes=10)

    assert model.count_params() == 8_648


def test_basic_cnn_follows_the_sequential_guide_layout():
    model = build_model(model_settings("basic_cnn", "model.filters=[32,64]"), MNIST, num_classes=10)

    kinds = [type(layer).__name__ for layer in model.layers]
    block = ["Conv2D", "Conv2D", "MaxPooling2D", "Dropout"]
    assert kinds == [*block, *block, "Flatten", "Dense", "Dropout", "Dense"]
    assert model.layers[-3].units == 512


@pytest.mark.parametrize(
    "name, overrides, expected_dropout_layers",
    [
        ("mlp", ["model.hidden_units=[32,16,8]"], 3),
        ("small_cnn", [], 1),
        ("basic_cnn", ["model.filters=[4,8]", "model.dense_units=16"], 3),
    ],
)
def test_every_model_honours_the_dropout_setting(name, overrides, expected_dropout_layers):
    with_dropout = build_model(model_settings(name, *overrides, "model.dropout=0.35"), MNIST, num_classes=10)
    without_dropout = build_model(model_settings(name, *overrides, "model.dropout=0"), MNIST, num_classes=10)

    rates = [layer.rate for layer in with_dropout.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.35] * expected_dropout_layers
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in without_dropout.layers)


@pytest.mark.parametrize(
    "name, filters, smallest_side",
    [("small_cnn", "[12,24,26]", 15), ("small_cnn", "[8,8]", 7), ("basic_cnn", "[32,64]", 16), ("basic_cnn", "[8]", 6)],
)
def test_input_check_matches_keras_shape_arithmetic_exactly(name, filters, smallest_side):
    settings = model_settings(name, f"model.filters={filters}")

    model = build_model(settings, (smallest_side, smallest_side, 1), num_classes=4)

    assert tuple(spatial_side_after_last_block(model)) == (1, 1)
    with pytest.raises(PipelineError, match=f"need at least {smallest_side}x{smallest_side}"):
        check_input(settings, (smallest_side - 1, smallest_side, 1))


@pytest.mark.parametrize(
    "name, message",
    [
        ("small_cnn", "model=small_cnn cannot take 8x8 inputs: its 3 strided 3x3 convolutions need at least 15x15"),
        ("basic_cnn", "model=basic_cnn cannot take 8x8 inputs: its 2 conv-conv-maxpool blocks need at least 16x16"),
    ],
)
def test_cnns_reject_8x8_digits_in_one_line(name, message):
    settings = model_settings(name)

    with pytest.raises(PipelineError) as error:
        build_model(settings, DIGITS, num_classes=10)

    assert str(error.value).startswith(message)
    assert "model=mlp" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_narrow_side_is_enough_to_reject():
    with pytest.raises(PipelineError, match="cannot take 28x8 inputs"):
        check_input(model_settings("small_cnn"), (28, 8, 1))


def test_mlp_takes_any_input_size():
    check_input(model_settings("mlp"), (1, 1, 1))
    check_input(model_settings("mlp"), DIGITS)


def test_check_input_does_not_load_tensorflow():
    script = (
        "import sys\n"
        "from pipeline.config import compose_config, validate\n"
        "from pipeline.model import check_input\n"
        "check_input(validate(compose_config(['model=small_cnn'])).model, (28, 28, 1))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, check=True, timeout=60)


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_output_stays_float32_under_mixed_precision(mixed_precision):
    model = build_model(model_settings("small_cnn"), MNIST, num_classes=10)

    probabilities = model(np.zeros((2, *MNIST), dtype="float32"))

    assert model.layers[0].compute_dtype == "float16"
    assert probabilities.dtype == "float32"


def test_bad_dropout_is_a_one_line_error_naming_the_key():
    with pytest.raises(PipelineError, match=r"^model\.dropout=1\.0: "):
        model_settings("mlp", "model.dropout=1.0")
