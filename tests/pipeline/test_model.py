"""Networks from config: the tutorial presets' exact parameter counts, layer lists, the user's own builder, and
the one-line errors for what cannot be built."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from pipeline.model import build_model

MNIST = (28, 28, 1)
DIGITS = (8, 8, 1)

# The tutorials' own models on 28x28x1 with 10 classes, as model.summary() prints them there (seeds/).
TUTORIAL_PARAMETERS = {
    "mnist_small_cnn_sgd": 8_630,
    "mnist_small_cnn_tape_sgd": 8_630,
    "mnist_basic_cnn_adam": 1_676_266,
    "mnist_cnn_tape_adam": 4_738_826,
    "mnist_custom_loop_sgd": 55_050,
    "fashion_logistic": 7_850,
    "fashion_mlp_dropout": 79_510,
}


def model_settings(*overrides: str):
    return validate(compose_config(list(overrides))).model


@pytest.mark.parametrize("preset, parameters", TUTORIAL_PARAMETERS.items())
def test_every_preset_builds_exactly_its_tutorials_network(preset, parameters):
    settings = model_settings(f"experiment={preset}")
    assert build_model(settings, MNIST, num_classes=10).count_params() == parameters


@pytest.mark.parametrize(
    "overrides, input_shape",
    [(["model=mlp"], MNIST), (["model=mlp"], DIGITS), (["model=small_cnn"], MNIST), (["model=basic_cnn"], MNIST),
     (["model=wide_cnn"], (32, 32, 3)), (["model=layers"], DIGITS), (["model=small_cnn"], (17, 17, 1))],
)
def test_builds_a_named_softmax_classifier_for_the_input(overrides, input_shape):
    settings = model_settings(*overrides)
    model = build_model(settings, input_shape, num_classes=10)

    probabilities = model(np.random.default_rng(0).random((3, *input_shape), dtype="float32"))

    assert model.name == settings.name
    assert model.input_shape == (None, *input_shape)
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(keras.ops.sum(probabilities, axis=1), np.ones(3), rtol=1e-5)


def test_a_layer_list_from_the_command_line_builds_those_layers():
    settings = model_settings("model=layers", "model.layers=[Flatten,{Dense: {units: 32, activation: tanh}}]")
    model = build_model(settings, DIGITS, num_classes=4)

    flatten, dense, output = model.layers[1:]
    assert (type(flatten).__name__, dense.units, dense.activation.__name__) == ("Flatten", 32, "tanh")
    assert model.count_params() == (64 * 32 + 32) + (32 * 4 + 4)


def test_dropout_is_the_one_knob_of_layer_lists_too():
    model = build_model(model_settings("model=basic_cnn", "model.dropout=0.4"), MNIST, 10)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.4, 0.4, 0.5]  # the two blocks follow the knob; the dense layer keeps the tutorial's 0.5


def test_mlp_dropout_zero_adds_no_layer_and_no_hidden_units_is_logistic_regression():
    mlp = build_model(model_settings("model=mlp", "model.hidden_units=[16]", "model.dropout=0"), MNIST, 10)
    logistic = build_model(model_settings("model=mlp", "model.hidden_units=[]"), MNIST, 10)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in mlp.layers)
    assert logistic.count_params() == 784 * 10 + 10


def test_input_scale_feeds_the_first_layer_scaled_pixels():
    model = build_model(model_settings("model=small_cnn", "model.input_scale=255"), MNIST, 10)
    scaling = model.get_layer("input_scale")
    np.testing.assert_allclose(scaling(np.full((1, *MNIST), 0.5, dtype="float32")), 127.5)
    assert model.count_params() == 8_630


@pytest.mark.parametrize(
    "overrides, input_shape, message",
    [
        (["model=small_cnn"], DIGITS,
         r"^model=small_cnn cannot take 8x8x1 inputs: model\.layers\[2\] \(Conv2D\) gets shape \(2, 2, 16\) "),
        (["model=small_cnn"], (16, 16, 1), r"^model=small_cnn cannot take 16x16x1 inputs: model\.layers\[3\] "),
        (["model=layers", "model.layers=[{Conv2d: {filters: 4, kernel_size: 3}}]"], MNIST,
         r"^model\.layers\[0\]=Conv2d: not a Keras layer; did you mean Conv2D"),
        (["model=layers", "model.layers=[Flatten,{Dense: {units: 8, activaton: relu}}]"], MNIST,
         r"^model\.layers\[1\] \(Dense\): bad arguments \{'units': 8, 'activaton': 'relu'\}: "),
        (["model=layers", "model.layers=[{Dense: {units: -3}}]"], MNIST,
         r"^model\.layers\[0\] \(Dense\): bad arguments"),
        (["model=layers", "model.layers=[{Flatten: {}, Dense: {units: 8}}]"], MNIST,
         r"^model\.layers\[0\]=.*: each entry names one layer"),
        (["model=layers", "model.layers=[my_missing_module:Block]"], MNIST,
         r"^model\.layers\[0\]=my_missing_module:Block: no module named my_missing_module"),
    ],
)
def test_what_cannot_be_built_is_one_line_naming_the_layer(overrides, input_shape, message):
    with pytest.raises(PipelineError, match=message) as raised:
        build_model(model_settings(*overrides), input_shape, num_classes=10)
    assert "\n" not in str(raised.value)


def test_bad_dropout_is_a_one_line_error_naming_the_key():
    with pytest.raises(PipelineError, match=r"^model\.dropout=1\.0: "):
        model_settings("model=mlp", "model.dropout=1.0")


def test_validating_layer_lists_and_builders_does_not_load_tensorflow(user_models):
    script = (
        "import sys\n"
        "from pipeline.compose import compose_config, validate\n"
        "validate(compose_config(['model=small_cnn']))\n"
        "validate(compose_config(['model=python', 'model.builder=my_models:build']))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=user_models, check=True, timeout=60,
                   env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": ""})


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_precision(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param.removeprefix("mixed_")
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("model", ["small_cnn", "mlp"])
def test_output_stays_float32_under_mixed_precision(mixed_precision, model):
    model = build_model(model_settings(f"model={model}"), MNIST, num_classes=10)

    probabilities = model(np.zeros((2, *MNIST), dtype="float32"))

    assert model.get_layer(index=1).compute_dtype == mixed_precision
    assert all(variable.dtype == "float32" for variable in model.weights)
    assert model.get_layer("output").compute_dtype == "float32" and probabilities.dtype == "float32"


# --- the user's own builder function ------------------------------------------------------------

USER_MODELS = '''
import keras
from keras import layers


def build(input_shape, num_classes, width=8):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(width, activation="relu"),
                             layers.Dense(num_classes, activation="softmax")], name=f"mine_{width}")


def raises(input_shape, num_classes):
    raise RuntimeError("no GPU for my model")


def not_a_model(input_shape, num_classes):
    return [layers.Dense(num_classes)]


def three_outputs(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(3, activation="softmax")])


def logits(input_shape, num_classes):
    return keras.Sequential([keras.Input(input_shape), layers.Flatten(), layers.Dense(num_classes)])
'''


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    """A working directory holding the user's my_models.py, as `python -m pipeline.run` would be started in."""
    (tmp_path / "my_models.py").write_text(textwrap.dedent(USER_MODELS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    return tmp_path


def test_a_builder_from_the_working_directory_gets_shapes_and_kwargs(user_models):
    settings = model_settings("model=python", "model.builder=my_models:build", "+model.kwargs.width=16")
    model = build_model(settings, DIGITS, num_classes=5)
    assert model.name == "mine_16"
    assert model.count_params() == (64 * 16 + 16) + (16 * 5 + 5)


def test_a_builders_model_is_returned_as_built_unless_input_scale_wraps_it(user_models):
    plain = build_model(model_settings("model=python", "model.builder=my_models:build"), DIGITS, num_classes=5)
    scaled = build_model(model_settings("model=python", "model.builder=my_models:build", "model.input_scale=255"),
                         DIGITS, num_classes=5)
    assert plain.name == "mine_8" and not any(layer.name == "input_scale" for layer in plain.layers)
    assert scaled.name == "python" and scaled.count_params() == plain.count_params()
    images = np.full((1, *DIGITS), 0.5, dtype="float32")
    np.testing.assert_allclose(scaled.get_layer("input_scale")(images), 127.5)
    inner = scaled.get_layer("mine_8")
    np.testing.assert_allclose(scaled(images), inner(images * 255), rtol=1e-6)


@pytest.mark.parametrize(
    "builder, message",
    [
        ("my_models:missing", r"^model\.builder=my_models:missing: my_models has no missing; it defines .*build"),
        ("my_models:raises", r"^model\.builder=my_models:raises raised RuntimeError: no GPU for my model "),
        ("my_models:not_a_model",
         r"^model\.builder=my_models:not_a_model returned list; it must return .*keras\.Model"),
        ("my_models:three_outputs", r"^model\.builder=my_models:three_outputs: the model outputs shape \(3,\); "
                                    r"it must end in \(10,\)"),
        ("my_models:logits",
         r"^model\.builder=my_models:logits: the last layer's activation is linear; it must be softmax"),
    ],
)
def test_a_builder_that_does_not_deliver_is_one_line(user_models, builder, message):
    with pytest.raises(PipelineError, match=message):
        build_model(model_settings("model=python", f"model.builder={builder}"), MNIST, num_classes=10)


@pytest.mark.parametrize(
    "builder, message",
    [("nowhere:build", r"^model\.builder=nowhere:build: no module named nowhere in the working directory"),
     ("my_models.build", r"^model\.builder=my_models\.build: not a reference; allowed: package\.module:function")],
)
def test_a_builder_that_cannot_be_found_fails_validation(user_models, builder, message):
    with pytest.raises(PipelineError, match=message):
        model_settings("model=python", f"model.builder={builder}")


def test_a_builder_is_required():
    with pytest.raises(PipelineError, match=r"^model\.builder: missing a required value"):
        model_settings("model=python")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=layers", "model.layers=[{Dense: {units: 8, activaton: relu}}]"],
         "error: model.layers[0] (Dense): bad arguments {'units': 8, 'activaton': 'relu'}"),
        (["model=python", "model.builder=my_models:raises"],
         "error: model.builder=my_models:raises raised RuntimeError: no GPU for my model"),
    ],
)
def test_the_command_line_reports_a_bad_model_in_one_line_and_records_no_run(user_models, mlflow_store, overrides,
                                                                             message):
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.run", *overrides, mlflow_store.override, f"output_dir={user_models / 'out'}"],
        capture_output=True, text=True, cwd=user_models, timeout=240,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(message) and "Traceback" not in result.stderr, result.stderr
    assert mlflow_store.runs() == []
