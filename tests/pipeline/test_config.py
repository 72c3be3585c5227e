"""Composition of every config option, and one-line errors for bad values, all before TensorFlow loads."""

import subprocess
import sys

import pytest

from pipeline.compose import compose_config, flatten, validate
from pipeline.config import CONF_DIR
from pipeline.errors import PipelineError
from tests.pipeline.data.conftest import run_cli_noting_tensorflow

REQUIRED = {"data=npz": ["data.path=x.npz"], "data=images": ["data.path=folder"],
            "tracking=server": ["tracking.uri=http://127.0.0.1:1"],
            "model=python": ["model.builder=pipeline.model:build_model"],  # validation only finds the module
            "device=multi_worker": ["trainer=custom"],  # model.fit cannot run on it
            "experiment=images_from_scratch": ["data.path=folder"],
            "experiment=transfer_learning": ["data.path=folder"]}


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


# preset: (data, model, optimizer, learning rate, trainer, batch, epochs, checkpoint tested), as in seeds/
TUTORIAL_RECIPES = {
    "mnist_small_cnn_sgd": ("mnist", "small_cnn", "sgd", 0.01, "fit", 64, 3, "last"),
    "mnist_small_cnn_tape_sgd": ("mnist", "small_cnn", "sgd", 0.01, "custom", 64, 3, "last"),
    "mnist_basic_cnn_adam": ("mnist", "basic_cnn", "adam", 0.001, "fit", 32, 1, "last"),
    "mnist_cnn_tape_adam": ("mnist", "wide_cnn", "adam", 0.001, "custom", 32, 5, "last"),
    "mnist_custom_loop_sgd": ("mnist", "mlp", "sgd", 0.001, "custom", 64, 3, "last"),
    "fashion_logistic": ("fashion_mnist", "mlp", "rmsprop", 0.001, "fit", 32, 5, "last"),
    "fashion_mlp_dropout": ("fashion_mnist", "mlp", "adam", 0.001, "fit", 32, 20, "best"),
}


@pytest.mark.parametrize("preset, recipe", TUTORIAL_RECIPES.items())
def test_experiment_presets_reproduce_the_tutorial_recipes(preset, recipe):
    s = validate(compose_config([f"experiment={preset}"]))
    assert (s.data.name, s.model.name, s.optimizer.name, s.optimizer.learning_rate, s.trainer.name,
            s.trainer.batch_size, s.trainer.epochs, s.trainer.checkpoint.evaluate) == recipe
    assert s.optimizer.schedule == "constant" and getattr(s.optimizer, "momentum", 0.0) == 0.0


def test_tutorial_000_sees_raw_pixels_and_tutorial_004_keeps_its_best_checkpoint_by_val_loss():
    assert validate(compose_config(["experiment=mnist_small_cnn_sgd"])).model.input_scale == 255
    fashion = validate(compose_config(["experiment=fashion_mlp_dropout"]))
    assert (fashion.model.hidden_units, fashion.model.dropout, fashion.data.val_fraction) == ([100], 0.3, 0.2)
    assert (fashion.trainer.checkpoint.monitor, fashion.trainer.checkpoint.mode) == ("val_loss", "min")


def test_a_presets_data_can_be_swapped_on_the_command_line():
    settings = validate(compose_config(["experiment=mnist_small_cnn_sgd", "data=npz", "data.path=digits.npz"]))
    assert (settings.data.name, settings.data.path, settings.model.name) == ("npz", "digits.npz", "small_cnn")
    assert (settings.optimizer.learning_rate, settings.trainer.batch_size) == (0.01, 64)


def test_command_line_overrides_win_over_presets():
    settings = validate(compose_config(["experiment=mnist_small_cnn_sgd", "trainer.epochs=7"]))
    assert settings.trainer.epochs == 7


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["optimizer=does_not_exist"],
         "optimizer=does_not_exist: unknown option; choose one of adam, adamw, rmsprop, sgd"),
        (["optimizer.lr=0.1"], "optimizer.lr: unknown key; allowed: name, learning_rate"),
        (["trainer.batch_size=abc"], "trainer.batch_size='abc': input should be a valid integer"),
        (["optimizer.learning_rate=0"], "optimizer.learning_rate=0: input should be greater than 0"),
        (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate=-0.1: input should be greater than 0"),
        (["model.dropout=1.0"], "model.dropout=1.0: input should be less than 1"),
        (["model.dropout=-0.1"], "model.dropout=-0.1: input should be greater than or equal to 0"),
        (["trainer.epochs=0"], "trainer.epochs=0: input should be greater than or equal to 1"),
        (["trainer.batch_size=0"], "trainer.batch_size=0: input should be greater than or equal to 1"),
        (["trainer.checkpoint.monitor=val_acc"],
         "trainer.checkpoint.monitor='val_acc': allowed: 'loss', 'accuracy', 'val_loss' or 'val_accuracy'"),
        (["trainer.checkpoint.every=0"], "trainer.checkpoint.every=0: allowed: epoch, <N> steps or <M> minutes "
                                         "(e.g. 500 steps, 10 minutes)"),
        (["trainer.checkpoint.every=5 parsecs"], "trainer.checkpoint.every='5 parsecs': allowed: epoch, <N> steps or "),
        (["trainer.checkpoint.every=2.5 steps"], "trainer.checkpoint.every='2.5 steps': allowed: epoch, <N> steps or "),
        (["data=npz"], "data.path: missing a required value"),
        (["optimizer.schedule=linear"], "optimizer.schedule='linear': allowed: 'constant', 'cosine' or 'exponential'"),
        (["tracking=server"], "tracking=server needs tracking.uri"),
        (["device.precision=bfloat16"],
         "device.precision='bfloat16': allowed: 'auto', 'float32', 'mixed_bfloat16' or 'mixed_float16'"),
        (["device.mixed_precision=true"], "device.mixed_precision: replaced by device.precision (auto, float32, "),
        (["+device.mixed_precision=true"], "device.mixed_precision: replaced by device.precision (auto, float32, "),
    ],
)
def test_bad_values_fail_with_one_line_naming_key_and_value(overrides, expected, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(PipelineError) as error:
        validate(compose_config(overrides))
    message = str(error.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_the_replaced_mixed_precision_key_fails_in_one_line_before_tensorflow_loads():
    result = run_cli_noting_tensorflow("device.mixed_precision=true", "tracking=none")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "device.mixed_precision: replaced by device.precision (auto, float32, mixed_bfloat16 or mixed_float16; "
        "true was mixed_float16)"), result.stderr
    assert result.stdout.strip().endswith("tensorflow imported: False")


@pytest.mark.parametrize(("every", "steps", "seconds"), [
    ("epoch", None, None), ("500 steps", 500, None), ("500steps", 500, None), ("1 step", 1, None),
    ("10 minutes", None, 600.0), ("0.5 minute", None, 30.0),
])
def test_checkpoints_inside_an_epoch_are_every_n_steps_or_m_minutes(every, steps, seconds):
    checkpoint = validate(compose_config([f"trainer.checkpoint.every={every}"])).trainer.checkpoint
    assert (checkpoint.every_steps, checkpoint.every_seconds) == (steps, seconds)


@pytest.mark.parametrize("every", ["0", "5 parsecs"])
def test_a_bad_checkpoint_interval_fails_in_one_line_before_tensorflow_loads(every, mlflow_store):
    result = run_cli_noting_tensorflow(f"trainer.checkpoint.every={every}", mlflow_store.override)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"trainer.checkpoint.every={every if every == '0' else repr(every)}: allowed: epoch, <N> steps or "
        "<M> minutes (e.g. 500 steps, 10 minutes)"), result.stderr
    assert result.stdout.strip().endswith("tensorflow imported: False")
    assert mlflow_store.runs() == []


@pytest.mark.parametrize(("stale_after", "expected"), [
    ("-1", "tracking.stale_after=-1: input should be greater than 0"),
    ("5 parsecs", "tracking.stale_after='5 parsecs': expected seconds or a number with s, m or h (600, 30m, 2h)"),
])
def test_a_bad_stale_after_fails_in_one_line_before_tensorflow_loads(stale_after, expected, mlflow_store):
    result = run_cli_noting_tensorflow(f"tracking.stale_after={stale_after}", mlflow_store.override)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {expected}"], result.stderr
    assert result.stdout.strip().endswith("tensorflow imported: False")
    assert mlflow_store.runs() == []


def test_flatten_gives_dotted_params():
    flat = flatten(validate(compose_config(["optimizer=sgd"])))
    assert flat["optimizer.name"] == "sgd"
    assert flat["optimizer.learning_rate"] == 0.01
    assert flat["trainer.checkpoint.monitor"] == "val_accuracy"
    assert flat["model.hidden_units"] == [256, 128]


def test_validation_never_imports_tensorflow():
    code = (
        "import sys\n"
        "from pipeline.compose import compose_config, validate\n"
        "validate(compose_config(['trainer=custom', 'model=small_cnn']))\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _schema_defaults_disagreeing_with(yaml_values: dict, schema: type, where: str) -> list[str]:
    """Keys whose literal YAML value differs from the schema's default (interpolations and required keys skipped)."""
    from pydantic import BaseModel

    disagreements = []
    for key, value in yaml_values.items():
        field = schema.model_fields.get(key)
        if field is None or (isinstance(value, str) and ("${" in value or value == "???")):
            continue
        annotation = field.annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            disagreements += _schema_defaults_disagreeing_with(value, annotation, f"{where}.{key}")
        elif not field.is_required():
            default = field.get_default(call_default_factory=True)
            default = list(default) if isinstance(default, tuple) else default
            if default != value:
                disagreements.append(f"{where}.{key}: YAML {value!r}, schema {default!r}")
    return disagreements


@pytest.mark.parametrize("group", ["data", "model", "optimizer", "trainer", "device", "tracking"])
def test_every_yaml_value_with_a_schema_default_agrees_with_it(group):
    """Defaults are written in conf/ for the user and in the schemas for code that builds settings: one knowledge,
    checked to be one."""
    from omegaconf import OmegaConf

    disagreements = []
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        settings = validate(compose_config([f"{group}={path.stem}", *REQUIRED.get(f"{group}={path.stem}", [])]))
        raw = OmegaConf.to_container(OmegaConf.load(path))
        raw.pop("defaults", None)
        if group == "model":  # a network's dropout is its own (basic_cnn's 0.25 is tutorial 001's); 0 is the base's
            raw.pop("dropout")
            raw.pop("kwargs", None)
        disagreements += _schema_defaults_disagreeing_with(raw, type(getattr(settings, group)), path.name)
    assert disagreements == []


def test_the_sweep_yaml_agrees_with_its_schema_defaults():
    from omegaconf import OmegaConf

    from sweeps.settings import SweepSettings

    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "sweep" / "default.yaml"))
    assert _schema_defaults_disagreeing_with(raw, SweepSettings, "sweep/default.yaml") == []
