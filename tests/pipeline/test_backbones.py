"""model=pretrained's backbones: the table against keras.applications itself (constructors, ImageNet files, minimum
sizes), each family's preprocessing and parameter count against the application built directly, the checks made
before TensorFlow loads, and the one-line errors of the command line (exit 2, no run recorded)."""

import keras
import numpy as np
import pytest

from pipeline import backbones
from pipeline.backbones import BACKBONES, check_backbone, imagenet_file
from pipeline.config import PretrainedModel
from pipeline.errors import PipelineError
from pipeline.model import backbone_of, build_model, unfreeze
from tests.pipeline.test_run import pipeline_run


def digits_npz(path, count=120, size=32):
    """Digits of ../shared's sample padded to `size` (grayscale), in Keras's mnist.npz layout."""
    from pipeline.config import PROJECT_ROOT

    with np.load(PROJECT_ROOT.parent / "shared" / "data" / "mnist-sample.npz") as archive:
        pad = (size - 28) // 2
        images = {name: np.pad(archive[name], ((0, 0), (pad, size - 28 - pad), (pad, size - 28 - pad)))
                  for name in ("x_train", "x_test")}
        np.savez(path, x_train=images["x_train"][:count], y_train=archive["y_train"][:count],
                 x_test=images["x_test"][:count // 2], y_test=archive["y_test"][:count // 2])
    return path


def test_the_table_holds_every_keras_applications_constructor():
    constructors = {name for name, value in vars(keras.applications).items() if name[0].isupper() and callable(value)}
    assert set(BACKBONES) == constructors
    for backbone in BACKBONES.values():
        assert callable(getattr(keras.applications, backbone.module).preprocess_input)


def fetched_file(monkeypatch, name: str, input_shape) -> tuple[str, str]:
    """The (file name, URL) Keras's constructor asks its downloader for; the download itself is refused."""
    from keras.src.utils import file_utils

    asked = []

    def refuse(fname, origin=None, **kwargs):
        asked.append((fname, origin))
        raise OSError("no download in tests")

    monkeypatch.setattr(file_utils, "get_file", refuse)
    with pytest.raises(OSError, match="no download in tests"):
        getattr(keras.applications, name)(include_top=False, weights="imagenet", input_shape=input_shape)
    (request,) = asked
    return request


# One backbone per naming rule of backbones.BACKBONES (each family's comprehension, each explicit entry), the
# smallest of each (building the largest at their minimum size takes minutes), at its minimum size; MobileNet v1/v2
# also at a size with its own file and at one without.
ONE_PER_NAMING_RULE = ["ConvNeXtTiny", "DenseNet121", "EfficientNetB0", "EfficientNetV2B0", "EfficientNetV2S",
                       "InceptionResNetV2", "InceptionV3", "MobileNet", "MobileNetV2", "MobileNetV3Small",
                       "NASNetMobile", "NASNetLarge", "ResNet50", "ResNet50V2", "VGG16", "VGG19", "Xception"]


@pytest.mark.parametrize("name, input_shape", [
    *((name, (BACKBONES[name].min_size,) * 2 + (3,)) for name in ONE_PER_NAMING_RULE),
    ("MobileNet", (128, 128, 3)), ("MobileNetV2", (96, 96, 3)), ("MobileNetV2", (40, 40, 3)),
])
def test_the_imagenet_file_is_the_one_keras_fetches(monkeypatch, name, input_shape):
    assert imagenet_file(name, input_shape) == fetched_file(monkeypatch, name, input_shape)


def test_every_family_of_the_table_is_among_those_checked():
    assert {BACKBONES[name].module for name in ONE_PER_NAMING_RULE} == {b.module for b in BACKBONES.values()}


@pytest.mark.parametrize("name", ["Xception", "InceptionV3"])
def test_the_minimum_size_is_kerass(name):
    minimum = BACKBONES[name].min_size
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        getattr(keras.applications, name)(include_top=False, weights=None, input_shape=(minimum - 1, minimum - 1, 3))
    with pytest.raises(PipelineError, match=f"^model.backbone={name} needs images of at least {minimum}x{minimum}; "
                                            f"the data's are {minimum - 1}x{minimum - 1}"):
        check_backbone(name, None, (minimum - 1, minimum - 1, 3))
    check_backbone(name, None, (minimum, minimum, 3))


def model_settings(backbone: str, **fields) -> PretrainedModel:
    return PretrainedModel(name="pretrained", backbone=backbone, weights=None, **fields)


# One of each scaling: 0..255 into built-in preprocessing, [-1, 1], caffe's BGR mean subtraction.
@pytest.mark.parametrize("name, module", [
    ("MobileNetV3Small", "mobilenet_v3"), ("ResNet50V2", "resnet_v2"), ("ResNet50", "resnet"),
])
def test_a_backbone_builds_with_its_parameters_and_its_own_preprocessing(name, module):
    classes = 5
    model = build_model(model_settings(name, dropout=0.2), (32, 32, 3), classes)
    direct = getattr(keras.applications, name)(include_top=False, weights=None, input_shape=(32, 32, 3))
    features = direct.output_shape[-1]
    assert model.count_params() == direct.count_params() + features * classes + classes
    assert model.layers[-1].activation.__name__ == "softmax"
    assert not backbone_of(model).trainable  # frozen by default

    # What the backbone sees: the module's own preprocess_input of the 0..255 pixels the pipeline's [0, 1] came from.
    backbone, preprocess_input = backbone_of(model), getattr(keras.applications, module).preprocess_input
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    pooled = np.asarray(keras.Model(model.inputs, model.get_layer("pooling").output)(images))

    def backbone_features(pixels):
        return np.asarray(backbone(preprocess_input(pixels), training=False)).mean(axis=(1, 2))

    expected = backbone_features(images * 255.0)
    scale = np.abs(expected).max()  # random weights in inference mode: features of any magnitude
    np.testing.assert_allclose(pooled / scale, expected / scale, atol=1e-4)
    assert np.abs(pooled - backbone_features(images)).max() > 1e-2 * scale  # the scale matters


def test_grayscale_images_are_repeated_to_three_channels(capsys):
    model = build_model(model_settings("ResNet50V2"), (32, 32, 1), 3)
    assert "grayscale images are repeated to 3 channels for ResNet50V2" in capsys.readouterr().out
    gray = np.random.default_rng(1).uniform(0, 1, (2, 32, 32, 1)).astype("float32")
    as_rgb = keras.Model(model.inputs, model.get_layer("gray_to_rgb").output)(gray)
    np.testing.assert_array_equal(np.asarray(as_rgb), np.repeat(gray, 3, axis=-1))


def test_unfreezing_opens_all_or_the_last_layers_of_the_backbone():
    from pipeline.config import FineTuneSettings

    model = build_model(model_settings("MobileNetV3Small"), (32, 32, 3), 3)
    layers = backbone_of(model).layers
    assert unfreeze(model, FineTuneSettings(epochs=1, unfreeze=10)) == 10
    assert [layer.trainable for layer in layers] == [False] * (len(layers) - 10) + [True] * 10
    assert unfreeze(model, FineTuneSettings(epochs=1, unfreeze="all")) == len(layers)
    assert all(layer.trainable for layer in layers)


def test_imagenet_weights_pass_when_cached_and_fail_offline_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    # A proxy that refuses every connection: no network, whatever the machine has (Keras's download honours it too).
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setattr(backbones, "_reachable", {})
    file_name, url = imagenet_file("MobileNetV3Small", (32, 32, 3))
    with pytest.raises(PipelineError) as error:
        check_backbone("MobileNetV3Small", "imagenet", (32, 32, 3))
    assert str(error.value).startswith(f"model.weights=imagenet: MobileNetV3Small needs {file_name}, not in "
                                       f"{tmp_path / 'models'} and not downloadable")
    assert f"download {url} and put it at {tmp_path / 'models' / file_name}" in str(error.value)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / file_name).write_bytes(b"cached")
    check_backbone("MobileNetV3Small", "imagenet", (32, 32, 3))


def wrong_weights_file(path):
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(path)
    return path


@pytest.mark.parametrize("case, overrides, expected", [
    ("unknown backbone", ["model.backbone=MobileNetV3Smal"],
     "error: model.backbone=MobileNetV3Smal: not a keras.applications backbone; did you mean MobileNetV3Small"),
    ("too small", ["model.backbone=Xception", "model.weights=null"],
     "error: model.backbone=Xception needs images of at least 71x71; the data's are 32x32"),
    ("offline imagenet", [], "error: model.weights=imagenet: MobileNetV3Small needs "
                             "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5, not in "),
    ("no such weights file", ["model.weights=/nonexistent/backbone.weights.h5"],
     "error: model.weights=/nonexistent/backbone.weights.h5: no such file"),
    ("wrong weights file", ["model.weights={wrong}"], "error: model.weights={wrong}: not weights of MobileNetV3Small"),
    ("no rate", ["trainer.fine_tune.epochs=1", "trainer.fine_tune.learning_rate=0"],
     "error: trainer.fine_tune.learning_rate=0: input should be greater than 0"),
    ("nothing to unfreeze", ["model.freeze=false", "trainer.fine_tune.epochs=1"],
     "error: trainer.fine_tune.epochs=1 needs a frozen backbone to unfreeze"),
])
def test_bad_pretrained_input_is_one_line_exit_2_and_no_run(tmp_path, mlflow_store, case, overrides, expected):
    wrong = wrong_weights_file(tmp_path / "dense.weights.h5")
    overrides = [override.format(wrong=wrong) for override in overrides]
    result = pipeline_run("model=pretrained", "data=npz", f"data.path={digits_npz(tmp_path / 'digits.npz')}",
                          mlflow_store.override, f"output_dir={tmp_path / 'run'}", *overrides,
                          KERAS_HOME=str(tmp_path / "keras"), https_proxy="http://127.0.0.1:9",
                          HTTPS_PROXY="http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and error_lines[0].startswith(expected.format(wrong=wrong)), result.stderr
    assert "Traceback" not in result.stderr
    assert mlflow_store.runs() == []
