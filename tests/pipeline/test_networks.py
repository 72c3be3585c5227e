"""model=scratch_xception against the network it copies: the `make_model` of Keras's example "Image classification
from scratch" (keras-io, examples/vision/image_classification_from_scratch.py, last modified 2023/11/09), copied
below as the example writes it. Ours differs in two places only: no Rescaling(1/255) entry layer (the pipeline's
pixels are already in [0, 1]) and the pipeline's softmax head (the example: one logit for 2 classes)."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.model import build_model

# --- the example's network, verbatim (Keras 3: `import keras; from keras import layers`) ---------------------------


def make_model(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)

    # Entry block
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(128, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    for size in [256, 512, 728]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(
            previous_block_activation
        )
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.GlobalAveragePooling2D()(x)
    if num_classes == 2:
        units = 1
    else:
        units = num_classes

    x = layers.Dropout(0.25)(x)
    # We specify activation=None so as to return logits
    outputs = layers.Dense(units, activation=None)(x)
    return keras.Model(inputs, outputs)


# --- helpers ------------------------------------------------------------------------------------------------------


def scratch_xception(*overrides: str):
    return validate(compose_config(["model=scratch_xception", *overrides])).model


def _sources(value) -> list[str]:
    """Names of the layers whose outputs a layer's inbound node takes, in order."""
    if isinstance(value, dict):
        history = None
        if value.get("class_name") == "__keras_tensor__":
            history = value.get("config", {}).get("keras_history")
        return [history[0]] if history else [name for item in value.values() for name in _sources(item)]
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in _sources(item)]
    return []


def structure(model: keras.Model) -> list[tuple]:
    """Every layer in order as (class, settings without its name, output shape, positions of the layers it takes),
    Rescaling layers left out (their consumers are wired to what they took)."""
    configs = {entry["name"]: entry for entry in model.get_config()["layers"]}
    position: dict[str, int] = {}
    rows = []
    for layer in model.layers:
        sources = [position[name] for name in _sources(configs[layer.name]["inbound_nodes"])]
        if isinstance(layer, layers.Rescaling):
            (position[layer.name],) = sources
            continue
        position[layer.name] = len(rows)
        settings = {key: value for key, value in layer.get_config().items() if key != "name"}
        rows.append((type(layer).__name__, settings, tuple(layer.output.shape), sources))
    return rows


# --- tests --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("input_shape, num_classes", [((180, 180, 3), 5), ((64, 64, 3), 3)])
def test_same_parameter_count_as_the_examples_network(input_shape, num_classes):
    ours = build_model(scratch_xception(), input_shape, num_classes=num_classes)
    example = make_model(input_shape, num_classes)

    assert ours.count_params() == example.count_params()
    assert ours.count_params() > 2_700_000  # not two empty models agreeing


@pytest.mark.parametrize("input_shape, num_classes", [((180, 180, 3), 5), ((64, 64, 3), 3)])
def test_same_layers_settings_and_wiring_as_the_example_up_to_the_head(input_shape, num_classes):
    ours = structure(build_model(scratch_xception(), input_shape, num_classes=num_classes))
    example = structure(make_model(input_shape, num_classes))

    # the input, the entry block's 3, 9 in each of 3 residual blocks, 3 + pooling + dropout, the head; no Rescaling
    assert len(ours) == len(example) == 37
    assert ours[:-1] == example[:-1]
    our_class, our_head, our_shape, our_sources = ours[-1]
    example_class, _, example_shape, example_sources = example[-1]
    assert (our_class, our_shape, our_sources) == (example_class, example_shape, example_sources)
    assert (our_head["units"], our_head["activation"]) == (num_classes, "softmax")


def test_with_two_classes_ours_has_exactly_one_more_dense_unit_than_the_examples_logit():
    ours = build_model(scratch_xception(), (64, 64, 3), num_classes=2)
    example = make_model((64, 64, 3), 2)
    features = ours.get_layer("output").input.shape[-1]

    assert features == 1024  # the last SeparableConv2D's filters, averaged over the image
    assert example.layers[-1].units == 1 and ours.get_layer("output").units == 2
    assert ours.count_params() - example.count_params() == features + 1  # one more unit: its weights and bias


def test_outputs_softmax_probabilities_and_is_named_after_the_example():
    model = build_model(scratch_xception(), (64, 64, 3), num_classes=3)

    probabilities = keras.ops.convert_to_numpy(model(np.random.default_rng(0).random((4, 64, 64, 3), dtype="float32")))

    assert model.name == "image_classifier_from_scratch"
    assert model.input_shape == (None, 64, 64, 3)
    assert not any(isinstance(layer, layers.Rescaling) for layer in model.layers)  # pixels come in [0, 1] already
    assert probabilities.shape == (4, 3)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), np.ones(4), rtol=1e-5)


@pytest.mark.parametrize("overrides, rate", [((), 0.25), (("model.dropout=0.5",), 0.5)])
def test_model_dropout_sets_the_rate_of_the_dropout_before_the_head(overrides, rate):
    model = build_model(scratch_xception(*overrides), (64, 64, 3), num_classes=3)

    dropouts = [layer for layer in model.layers if isinstance(layer, layers.Dropout)]

    assert [layer.rate for layer in dropouts] == [rate]
    assert model.layers[-2] is dropouts[0]


def test_validating_the_preset_does_not_load_tensorflow():
    script = (
        "import sys\n"
        "from pipeline.compose import compose_config, validate\n"
        "validate(compose_config(['model=scratch_xception']))\n"
        "import pipeline.networks\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, check=True, timeout=60,
                   env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": ""})


def test_the_images_from_scratch_preset_trains_on_a_folder(tmp_path):
    from pipeline.core import run_pipeline
    from tests.pipeline.test_inputs import photo_folder

    root = photo_folder(tmp_path / "photos", per_class=8, size=32)
    settings = validate(compose_config(["experiment=images_from_scratch", f"data.path={root}",
                                        "data.image_size=[32,32]", "trainer.epochs=1", "trainer.batch_size=8",
                                        "trainer.verbose=0",
                                        "tracking=none", f"output_dir={tmp_path / 'out'}"]))
    assert settings.data.augment and settings.model.name == "scratch_xception"
    result = run_pipeline(settings)
    assert len(result.history["loss"]) == 1 and 0.0 <= result.test_metrics["test_accuracy"] <= 1.0
