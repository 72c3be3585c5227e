"""Composition of every config option, and one-line errors for bad values, all before TensorFlow loads."""

import subprocess
import sys

import pytest

from pipeline.config import CONF_DIR, compose_config, flatten, validate
from pipeline.errors import PipelineError

REQUIRED = {"data=npz": ["data.path=x.npz"], "data=images": ["data.path=folder"],
            "tracking=server": ["tracking.uri=http://127.0.0.1:1"]}


def options(group: str) -> list[str]:
    return sorted(f"{group}={path.stem}" for path in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "choice", [*options("data"), *options("model"), *options("optimizer"), *options("trainer"),
               *options("device"), *options("tracking"), *options("experiment")],
)
def test_every_option_composes_and_validates(choice):
    settings = validate(compose_config([choice, *REQUIRED.get(choice, [])]))
    group, _, name = choice.partition("=")
    if group not in ("experiment",):
        assert getattr(settings, group).name == name


def test_experiment_presets_reproduce_the_tutorial_recipes():
    small = validate(compose_config(["experiment=mnist_small_cnn_sgd"]))
    assert (small.data.name, small.model.name, small.optimizer.name) == ("mnist", "small_cnn", "sgd")
    assert (small.optimizer.learning_rate, small.trainer.batch_size, small.trainer.epochs) == (0.01, 64, 3)
    custom = validate(compose_config(["experiment=mnist_custom_loop_adam"]))
    assert (custom.trainer.name, custom.optimizer.name) == ("custom", "adam")
    fashion = validate(compose_config(["experiment=fashion_mlp_dropout"]))
    assert (fashion.data.name, fashion.model.name, fashion.model.dropout) == ("fashion_mnist", "mlp", 0.3)
    vgg = validate(compose_config(["experiment=mnist_vgg_adam"]))
    assert (vgg.model.name, vgg.optimizer.name) == ("basic_cnn", "adam")


def test_command_line_overrides_win_over_presets():
    settings = validate(compose_config(["experiment=mnist_small_cnn_sgd", "trainer.epochs=7"]))
    assert settings.trainer.epochs == 7


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["optimizer=does_not_exist"], "optimizer=does_not_exist: unknown option; choose one of adam, adamw, rmsprop, sgd"),
        (["optimizer.lr=0.1"], "optimizer.lr: unknown key; allowed: name, learning_rate"),
        (["trainer.batch_size=abc"], "trainer.batch_size='abc': input should be a valid integer"),
        (["optimizer.learning_rate=0"], "optimizer.learning_rate=0: input should be greater than 0"),
        (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate=-0.1: input should be greater than 0"),
        (["model.dropout=1.0"], "model.dropout=1.0: input should be less than 1"),
        (["model.dropout=-0.1"], "model.dropout=-0.1: input should be greater than or equal to 0"),
        (["trainer.epochs=0"], "trainer.epochs=0: input should be greater than or equal to 1"),
        (["trainer.batch_size=0"], "trainer.batch_size=0: input should be greater than or equal to 1"),
        (["data=npz"], "data.path: missing a required value"),
        (["optimizer.schedule=linear"], "optimizer.schedule='linear': allowed: 'constant', 'cosine' or 'exponential'"),
        (["tracking=server"], "tracking=server needs tracking.uri"),
    ],
)
def test_bad_values_fail_with_one_line_naming_key_and_value(overrides, expected, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(PipelineError) as error:
        validate(compose_config(overrides))
    message = str(error.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_flatten_gives_dotted_params():
    flat = flatten(validate(compose_config(["optimizer=sgd"])))
    assert flat["optimizer.name"] == "sgd"
    assert flat["optimizer.learning_rate"] == 0.01
    assert flat["trainer.checkpoint.monitor"] == "val_accuracy"
    assert flat["model.hidden_units"] == [256, 128]


def test_validation_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from pipeline.config import compose_config, validate\n"
        "validate(compose_config(['trainer=custom', 'model=small_cnn']))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
