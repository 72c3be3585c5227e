"""The networks of `conf/model/`: a list of Keras layers, an MLP, or the user's own builder function.

`small_cnn`, `wide_cnn`, `basic_cnn` and `model=layers` are layer lists declared in YAML and built by one function;
the MLP's list is derived from its sizes. Every network is built on a symbolic input of the data's shape before
anything is recorded, so what cannot work (an unknown layer, a bad argument, images too small for the strides, the
wrong number of outputs) is a one-line error naming the layer, and no MLflow run is started for it.
"""

from __future__ import annotations

import difflib
import warnings
from typing import TYPE_CHECKING, Any

from pipeline import backbones
from pipeline.config import (
    IMAGENET,
    FineTuneSettings,
    LayersModel,
    MlpModel,
    ModelSettings,
    PretrainedModel,
    PythonModel,
)
from pipeline.errors import PipelineError, one_line
from pipeline.imports import import_object

if TYPE_CHECKING:
    import keras

LayerSpec = tuple[str, dict[str, Any]]  # a Keras layer class name (or package.module:Class) and its arguments


def layer_specs(settings: LayersModel | MlpModel) -> list[LayerSpec]:
    """The hidden layers, in order, as (class name, arguments)."""
    if isinstance(settings, MlpModel):
        specs: list[LayerSpec] = [("Flatten", {})]
        for units in settings.hidden_units:
            specs.append(("Dense", {"units": units, "activation": settings.activation}))
            if settings.dropout > 0:  # dropout 0 adds no layer, so summaries show only what is used
                specs.append(("Dropout", {"rate": settings.dropout}))
        return specs
    return [(entry, {}) if isinstance(entry, str) else _single_item(entry) for entry in settings.layers]


def _single_item(entry: dict[str, dict[str, Any] | None]) -> LayerSpec:
    ((name, arguments),) = entry.items()
    return name, dict(arguments or {})


def build_model(settings: ModelSettings, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """An uncompiled model taking (height, width, channels) images in [0, 1], ending in `num_classes` softmax
    probabilities. One-line PipelineError for anything that does not build."""
    import keras

    if isinstance(settings, PretrainedModel):
        return _pretrained(settings, input_shape, num_classes)
    if isinstance(settings, PythonModel):
        network = _call_builder(settings, input_shape, num_classes)
        if settings.input_scale == 1.0:
            return network  # the user's model as they built it
        inputs, features = _image_input(settings, input_shape)
        return keras.Model(inputs, network(features), name=settings.name)
    inputs, features = _image_input(settings, input_shape)
    for index, (name, arguments) in enumerate(layer_specs(settings)):
        features = _apply(_make_layer(name, arguments, index, settings), features, index, settings, input_shape)
    return keras.Model(inputs, _output(features, num_classes), name=settings.name)


def _output(features, num_classes: int):
    import keras

    # float32 output under mixed precision too (bfloat16 or float16), so the softmax and the loss stay stable.
    return keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")(features)


def _pretrained(settings: PretrainedModel, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """[0, 1] images -> 3 channels -> 0..255 -> the backbone module's own preprocess_input (its ImageNet weights'
    scaling: [-1, 1], caffe's BGR means, or nothing where the backbone has its preprocessing built in) -> the
    backbone -> global average pooling, dropout, softmax. A pretrained backbone runs in inference mode
    (training=False), so its BatchNorm statistics stay as trained, also once fine-tuning unfreezes it."""
    import keras

    backbones.check_backbone(settings.backbone, settings.weights, input_shape)
    height, width, channels = input_shape
    inputs = keras.Input(shape=input_shape, name="image")
    pixels = inputs
    if channels == 1:
        print(f"model=pretrained: grayscale images are repeated to 3 channels for {settings.backbone}")
        pixels = keras.layers.Concatenate(name="gray_to_rgb")([inputs] * 3)
    pixels = keras.layers.Rescaling(255.0, name="to_0_255")(pixels)
    application = getattr(keras.applications, backbones.BACKBONES[settings.backbone].module)
    backbone = _backbone(settings, (height, width, 3))
    backbone.trainable = not settings.freeze
    pretrained = settings.weights is not None
    features = backbone(application.preprocess_input(pixels), training=False if pretrained else None)
    features = keras.layers.GlobalAveragePooling2D(name="pooling")(features)
    if settings.dropout > 0:
        features = keras.layers.Dropout(settings.dropout, name="dropout")(features)
    return keras.Model(inputs, _output(features, num_classes), name=f"{settings.name}_{backbone.name}")


def _backbone(settings: PretrainedModel, input_shape: tuple[int, int, int]) -> keras.Model:
    import keras

    constructor = getattr(keras.applications, settings.backbone)
    try:
        # A file of another network fails with a warning per layer before its error: one line says it instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            backbone = constructor(include_top=False, weights=settings.weights, input_shape=input_shape)
        for warning in caught:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        return backbone
    except Exception as error:  # noqa: BLE001 - a download, an h5 file or a shape mismatch: many error types
        if settings.weights == IMAGENET:
            file_name, url = backbones.imagenet_file(settings.backbone, input_shape)
            where = backbones.keras_home() / "models" / file_name
            raise PipelineError(f"model.weights=imagenet: {settings.backbone} could not load {file_name} "
                                f"({one_line(error)}); download {url} and put it at {where}") from None
        if settings.weights is not None:
            raise PipelineError(f"model.weights={settings.weights}: not weights of {settings.backbone} (include_top="
                                f"False, {input_shape[0]}x{input_shape[1]}x3): {one_line(error)}") from None
        raise PipelineError(f"model.backbone={settings.backbone} cannot take {input_shape} inputs: "
                            f"{one_line(error)}") from None


def backbone_of(model: keras.Model) -> keras.Model:
    """The keras.applications network inside a model=pretrained model (its one nested model)."""
    import keras

    (backbone,) = (layer for layer in model.layers if isinstance(layer, keras.Model))
    return backbone


def unfreeze(model: keras.Model, fine_tune: FineTuneSettings) -> int:
    """Make the backbone's layers trainable, all or the last `unfreeze` (more than it has: all); the number of layers
    unfrozen. The model must be compiled again for it to count."""
    backbone = backbone_of(model)
    backbone.trainable = True
    count = len(backbone.layers) if fine_tune.unfreeze == "all" else min(fine_tune.unfreeze, len(backbone.layers))
    for index, layer in enumerate(backbone.layers):  # each one: the setter need not reach a functional's layers
        layer.trainable = index >= len(backbone.layers) - count
    return count


def _image_input(settings: ModelSettings, input_shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """The symbolic image input, and what the network reads: the images times `model.input_scale`, unless 1."""
    import keras

    inputs = keras.Input(shape=input_shape, name="image")
    if settings.input_scale == 1.0:
        return inputs, inputs
    return inputs, keras.layers.Rescaling(settings.input_scale, name="input_scale")(inputs)


def _where(settings: ModelSettings, index: int, name: str) -> str:
    """Where a layer is declared, as the user would override it."""
    if isinstance(settings, LayersModel):
        return f"model.layers[{index}] ({name})"
    return f"model={settings.name} layer {name}"


def _make_layer(name: str, arguments: dict[str, Any], index: int, settings: ModelSettings) -> keras.layers.Layer:
    import keras

    where = _where(settings, index, name)
    if ":" in name:
        layer_class = import_object(name, key=f"model.layers[{index}]")
    else:
        layer_class = getattr(keras.layers, name, None)
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        close = difflib.get_close_matches(name, _keras_layer_names(), n=3, cutoff=0.6)
        if close:
            hint = f"; did you mean {', '.join(close)}?"
        else:
            hint = "; see keras.io/api/layers (or give package.module:Class)"
        raise PipelineError(f"model.layers[{index}]={name}: not a Keras layer{hint}")
    try:
        return layer_class(**arguments)
    except Exception as error:  # noqa: BLE001 - Keras raises TypeError or ValueError for bad arguments
        raise PipelineError(f"{where}: bad arguments {arguments}: {one_line(error)}") from None


def _apply(layer, features, index: int, settings: ModelSettings, input_shape: tuple[int, int, int]):
    try:
        return layer(features)
    except Exception as error:  # noqa: BLE001 - shape errors come as ValueError from many layers
        height, width, channels = input_shape
        raise PipelineError(
            f"model={settings.name} cannot take {height}x{width}x{channels} inputs: "
            f"{_where(settings, index, layer.__class__.__name__)} "
            f"gets shape {tuple(features.shape)[1:]} ({one_line(error)}); use larger images or change the layers"
        ) from None


def _keras_layer_names() -> list[str]:
    import keras

    return [name for name, value in vars(keras.layers).items()
            if isinstance(value, type) and issubclass(value, keras.layers.Layer)]


def _call_builder(settings: PythonModel, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    import keras

    key = f"model.builder={settings.builder}"
    builder = import_object(settings.builder, key="model.builder")
    try:
        model = builder(input_shape=input_shape, num_classes=num_classes, **settings.kwargs)
    except Exception as error:  # noqa: BLE001 - the user's function raised
        raise PipelineError(f"{key} raised {one_line(error)} (called with input_shape={input_shape}, "
                            f"num_classes={num_classes}, model.kwargs={settings.kwargs})") from None
    if not isinstance(model, keras.Model):
        raise PipelineError(f"{key} returned {type(model).__name__}; it must return an uncompiled keras.Model")
    try:
        outputs = model(keras.Input(shape=input_shape))
    except Exception as error:  # noqa: BLE001 - the user's layers may raise anything on the wrong input shape
        raise PipelineError(f"{key}: the model cannot take {input_shape} inputs: {one_line(error)}") from None
    if tuple(outputs.shape[1:]) != (num_classes,):
        raise PipelineError(
            f"{key}: the model outputs shape {tuple(outputs.shape[1:])}; it must end in ({num_classes},), "
            f"one softmax probability per class"
        )
    last = model.layers[-1] if model.layers else None
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") != "softmax":
        raise PipelineError(
            f"{key}: the last layer's activation is {getattr(activation, '__name__', activation)}; it must be softmax "
            "(the pipeline's loss takes probabilities)"
        )
    return model
