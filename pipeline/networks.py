"""Built-in networks written as Python builders, for `model=python` presets (`conf/model/scratch_xception.yaml`).

Each is called as `builder(input_shape=(h, w, c), num_classes=n, **model.kwargs)` and returns an uncompiled
keras.Model ending in `num_classes` softmax probabilities. Keras is imported inside the functions, so this module
can be found and imported while the config is validated, before TensorFlow loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def image_classifier_from_scratch(
    input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.25
) -> keras.Model:
    """The `make_model` of Keras's example "Image classification from scratch" (keras-io,
    examples/vision/image_classification_from_scratch.py, last modified 2023/11/09): a small Xception with
    residual SeparableConv2D blocks."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape)

    # Entry block
    # No Rescaling(1.0 / 255) here: the pipeline already feeds float32 images in [0, 1] (the layer has no weights).
    x = layers.Conv2D(128, 3, strides=2, padding="same")(inputs)
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
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    x = layers.SeparableConv2D(1024, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    # The pipeline's softmax head, float32 under mixed precision (the example: Dense(1) logits if 2 classes, else n).
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name="image_classifier_from_scratch")
