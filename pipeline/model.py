"""The Keras architectures of `conf/model/`, and the input-size check that runs before TensorFlow loads.

Keras is imported inside `build_model`, not at the top: `check_input` is pure Python so a config that
cannot work fails in a second, before TensorFlow starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pipeline.config import BasicCnnModel, MlpModel, ModelSettings, SmallCnnModel
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Downsampling:
    """The valid-padding windows (size, stride) one `filters` entry applies to the height and width."""

    windows: tuple[tuple[int, int], ...]
    block: str  # what one filters entry is, for the error message

    def smallest_side(self, blocks: int) -> int:
        """The smallest input side that leaves at least 1x1 after `blocks` blocks.

        Keras's valid output size is floor((side - size) / stride) + 1, so the smallest side giving
        `out` is (out - 1) * stride + size; walk that back from a 1x1 output.
        """
        side = 1
        for size, stride in reversed(self.windows * blocks):
            side = (side - 1) * stride + size
        return side


DOWNSAMPLING: dict[str, Downsampling] = {
    "small_cnn": Downsampling(windows=((3, 2),), block="strided 3x3 convolutions"),
    "basic_cnn": Downsampling(windows=((3, 1), (3, 1), (2, 2)), block="conv-conv-maxpool blocks"),
}


def check_input(settings: ModelSettings, input_shape: tuple[int, int, int]) -> None:
    """Raise a one-line PipelineError if the architecture shrinks this input to nothing."""
    downsampling = DOWNSAMPLING.get(settings.name)
    if downsampling is None:  # the MLP flattens any size
        return
    height, width, _ = input_shape
    blocks = len(settings.filters)
    smallest = downsampling.smallest_side(blocks)
    if min(height, width) < smallest:
        raise PipelineError(
            f"model={settings.name} cannot take {height}x{width} inputs: its {blocks} {downsampling.block} "
            f"need at least {smallest}x{smallest}; use model=mlp, fewer model.filters or larger images"
        )


def build_model(settings: ModelSettings, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """An uncompiled Sequential model named after the architecture, ending in a float32 softmax."""
    import keras
    from keras import layers

    check_input(settings, input_shape)
    hidden = HIDDEN_LAYERS[settings.name](settings)
    # float32 output even under the mixed_float16 policy, so the softmax and the loss stay stable.
    output = layers.Dense(num_classes, activation="softmax", dtype="float32")
    return keras.Sequential([keras.Input(shape=input_shape), *hidden, output], name=settings.name)


def _dropout(rate: float) -> list[keras.layers.Layer]:
    """Dropout 0 adds no layer at all, so summaries and saved models show only what is used."""
    from keras import layers

    return [layers.Dropout(rate)] if rate > 0 else []


def _mlp(settings: MlpModel) -> list[keras.layers.Layer]:
    from keras import layers

    hidden: list[keras.layers.Layer] = [layers.Flatten()]
    for units in settings.hidden_units:
        hidden += [layers.Dense(units, activation=settings.activation), *_dropout(settings.dropout)]
    return hidden


def _small_cnn(settings: SmallCnnModel) -> list[keras.layers.Layer]:
    from keras import layers

    convolutions = [layers.Conv2D(f, 3, strides=2, activation="relu") for f in settings.filters]
    return [*convolutions, *_dropout(settings.dropout), layers.GlobalAveragePooling2D()]


def _basic_cnn(settings: BasicCnnModel) -> list[keras.layers.Layer]:
    from keras import layers

    hidden: list[keras.layers.Layer] = []
    for f in settings.filters:
        hidden += [
            layers.Conv2D(f, 3, activation="relu"),
            layers.Conv2D(f, 3, activation="relu"),
            layers.MaxPooling2D(2),
            *_dropout(settings.dropout),
        ]
    classifier = [layers.Flatten(), layers.Dense(settings.dense_units, activation="relu"), *_dropout(settings.dropout)]
    return [*hidden, *classifier]


HIDDEN_LAYERS: dict[str, Callable[..., list[keras.layers.Layer]]] = {
    "mlp": _mlp,
    "small_cnn": _small_cnn,
    "basic_cnn": _basic_cnn,
}
