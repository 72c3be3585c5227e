"""Checks that turn raw arrays into the pipeline's images (uint8 0..255, or float32 already in [0, 1]; channels
last) and labels (int32 class indices), with one-line errors naming the array and what is allowed."""

from __future__ import annotations

import numpy as np

from pipeline.data.dataset import Split
from pipeline.data.splits import whole
from pipeline.errors import PipelineError


def labeled_splits(
    arrays: dict[str, np.ndarray], num_classes: int | None, where: str
) -> tuple[Split, Split, int]:
    """Checked train and test splits from raw arrays, and the number of classes (given, or largest y_train + 1)."""
    splits = {}
    for split in ("train", "test"):
        images, scale = _images(arrays[f"x_{split}"], f"x_{split}", where)
        labels = _labels(arrays[f"y_{split}"], f"y_{split}", where)
        if len(images) != len(labels):
            raise PipelineError(
                f"{where}: x_{split} has {len(images)} images but y_{split} has {len(labels)} labels; they must match"
            )
        splits[split] = (images, labels, scale)
    (x_train, y_train, train_scale), (x_test, y_test, test_scale) = splits["train"], splits["test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise PipelineError(
            f"{where}: x_test images are {x_test.shape[1:]} but x_train images are {x_train.shape[1:]}; they must match"
        )
    derived = "" if num_classes else ": the largest y_train label + 1; set data.num_classes to allow more"
    num_classes = num_classes or int(y_train.max()) + 1
    if num_classes < 2:
        raise PipelineError(f"{where}: num_classes={num_classes}; a classifier needs at least 2 classes")
    for name, labels in (("y_train", y_train), ("y_test", y_test)):
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.size:
            allowed = f"0..{num_classes - 1} (num_classes={num_classes}{derived})"
            raise PipelineError(f"{where}: {name} holds label {outside[0]}; allowed: {allowed}")
    return (
        whole(y_train.astype(np.int32), pixels=x_train, scale=train_scale),
        whole(y_test.astype(np.int32), pixels=x_test, scale=test_scale),
        num_classes,
    )


def _images(array: np.ndarray, name: str, where: str) -> tuple[np.ndarray, float]:
    """(n, h, w, c) pixels as held in memory, and the factor that takes them to [0, 1]: integer pixels must be
    0..255 (kept as uint8, scaled per batch by the input pipeline), float pixels already 0..1 (float32).

    Float pixels above 1 are an error rather than guessed to be 0..255: a wrong guess would train silently on bad data.
    """
    shape = "allowed: (n, height, width) or (n, height, width, channels) with 1 or 3 channels last"
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3)):
        raise PipelineError(f"{where}: {name} has shape {array.shape}; {shape}")
    if len(array) == 0:
        raise PipelineError(f"{where}: {name} holds no images")
    images = array if array.ndim == 4 else array[..., np.newaxis]
    if np.issubdtype(images.dtype, np.integer):
        low, high, allowed = images.min(), images.max(), "integer pixels must be in 0..255"
        if low >= 0 and high <= 255:
            return images.astype(np.uint8, copy=False), 1 / 255
    elif np.issubdtype(images.dtype, np.floating):
        low, high, allowed = images.min(), images.max(), "float pixels must be in [0, 1] (or save uint8 0..255)"
        if low >= 0.0 and high <= 1.0:  # NaN fails both comparisons
            return images.astype(np.float32, copy=False), 1.0
    else:
        allowed = "uint8 (0..255) or float (0..1) pixels"
        raise PipelineError(f"{where}: {name} has dtype {images.dtype}; allowed: {allowed}")
    raise PipelineError(f"{where}: {name} holds pixel values in [{low}, {high}]; {allowed}")


def _labels(array: np.ndarray, name: str, where: str) -> np.ndarray:
    """int64 class indices: integers, or floats holding whole numbers."""
    if array.ndim != 1:
        allowed = "(n,) class indices (one-hot? save the argmax)"
        raise PipelineError(f"{where}: {name} has shape {array.shape}; allowed: {allowed}")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        fractional = array[array != np.round(array)]  # NaN included
        if not fractional.size:
            return array.astype(np.int64)
        bad = f"e.g. {fractional[0]}"
    else:
        bad = f"dtype {array.dtype}"
    raise PipelineError(f"{where}: {name} holds non-integer labels ({bad}); allowed: integer class indices")

