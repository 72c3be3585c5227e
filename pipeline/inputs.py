"""The tf.data input pipeline both trainers, the scoring and the logged model read: batches of float32 images in
[0, 1] and int32 labels, built on the CPU from a `Dataset`, whatever holds its images.

Pixels held in memory (the array sources, `data.cache=memory`) or memory-mapped (`data.cache=disk`) are gathered a
batch at a time and scaled per batch, so they stay uint8 and no dataset-sized tensor is ever placed on a device.
Image files (`data.cache=none`) are read, decoded and resized in parallel as batches are needed: memory is bounded by
the batches in flight. Augmentation (`data.augment`) runs on training batches, in the pipeline, on the CPU.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.config import DataSettings, LayerEntry
from pipeline.data import cache
from pipeline.data.dataset import Dataset, ImageFiles, Split
from pipeline.errors import PipelineError, one_line

AUTOTUNE = tf.data.AUTOTUNE
DECODE_BATCH = 256  # images per write when a folder is decoded into a cache


def training_batches(data: Dataset, batch_size: int, seed: int, augment: keras.Sequential | None = None,
                     first_epoch: int = 0, skip_batches: int = 0) -> tf.data.Dataset:
    """Shuffled training batches (seeded, reshuffled each epoch), augmented when asked. `first_epoch` > 0 (a resumed
    run) starts from that epoch's order, as if the epochs before had been read; `skip_batches` (a run resumed inside
    that epoch) leaves out its first batches, so the rest are the uninterrupted run's. Only their row numbers are read,
    unless data.augment draws for them (the augmentation's generator continues from the epoch's start) or bad files
    left out of a streamed folder shift the batches."""
    batches = _batches(data, data.train, batch_size, shuffle_seed=seed, skip_epochs=first_epoch,
                       skip_batches=skip_batches if augment is None else 0)
    if augment is not None:
        batches = batches.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=AUTOTUNE)
        batches = batches.skip(skip_batches)
    return batches.prefetch(AUTOTUNE)


def evaluation_batches(data: Dataset, split: str, batch_size: int) -> tf.data.Dataset:
    """A split's batches in order (validation, test)."""
    return _batches(data, data.splits()[split], batch_size).prefetch(AUTOTUNE)


def training_examples(data: Dataset, augment: keras.Sequential, seed: int, count: int = 16) -> np.ndarray:
    """A first training batch of `count` images, augmented: what the model sees."""
    batches = training_batches(data, min(count, len(data.train)), seed, augment)
    return next(iter(batches))[0].numpy()


def split_images(data: Dataset, split: str, count: int | None = None) -> np.ndarray:
    """The first `count` images of a split (all by default) as the model sees them, as one float32 array."""
    chosen = data.splits()[split]
    chosen = chosen.take(slice(0, count)) if count is not None else chosen
    batches = _batches(data, chosen, batch_size=max(1, min(len(chosen), 512)))
    return np.concatenate([x.numpy() for x, _ in batches])


def _batches(data: Dataset, split: Split, batch_size: int, shuffle_seed: int | None = None,
             skip_epochs: int = 0, skip_batches: int = 0) -> tf.data.Dataset:
    with tf.device("/CPU:0"):
        examples = tf.data.Dataset.from_tensor_slices((split.rows, split.labels))
        if shuffle_seed is not None:
            examples = examples.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
            for _ in range(skip_epochs):  # each pass draws the next epoch's order; only row numbers are read
                for _ in examples.batch(1 << 16):
                    pass
        pixels = _pool_pixels(data, split)
        # Skipped as rows, before anything is read; but a streamed folder that leaves bad files out counts its
        # batches only after decoding.
        skip_decoded = skip_batches if pixels is None and data.image_files and data.image_files.skip_bad_images else 0
        examples = examples.skip((skip_batches - skip_decoded) * batch_size)
        if pixels is None:  # decoded file by file, in parallel, as batches are needed
            files = data.image_files
            assert files is not None and split.files is not None
            paths = tf.constant(split.files)
            decoded = examples.map(lambda row, label: (_decode(tf.gather(paths, row), files), label),
                                   num_parallel_calls=AUTOTUNE)
            if files.skip_bad_images:  # a file that passed the scan but still fails to decode is left out
                decoded = decoded.ignore_errors()
            batches = decoded.batch(batch_size).skip(skip_decoded)
        else:
            batches = examples.batch(batch_size).map(lambda rows, labels: (_gather(pixels, rows), labels),
                                                     num_parallel_calls=AUTOTUNE)
        scale = split.scale
        return batches.map(lambda x, y: (tf.cast(x, tf.float32) * scale, y), num_parallel_calls=AUTOTUNE)


def _gather(pixels: np.ndarray, rows: tf.Tensor) -> tf.Tensor:
    """The batch's rows of a host array (in memory or memory-mapped): no copy of the array into TensorFlow."""
    batch = tf.numpy_function(lambda indices: pixels[indices], [rows], tf.as_dtype(pixels.dtype), stateful=False)
    batch.set_shape((None, *pixels.shape[1:]))
    return batch


def _decode(path: tf.Tensor, files: ImageFiles) -> tf.Tensor:
    """uint8 (height, width, channels): as Keras's image_dataset_from_directory decodes (bilinear resize), except
    that any image becomes RGB first, so grayscale, palette and RGBA files mixed in a folder all decode."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    if files.channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    image = tf.image.resize(image, (files.height, files.width))
    image.set_shape((files.height, files.width, files.channels))
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _pool_pixels(data: Dataset, split: Split) -> np.ndarray | None:
    """The array a split's rows index: its own pixels, or its folder decoded into memory or the disk cache; None
    when the files stream."""
    if split.pixels is not None:
        return split.pixels
    files = data.image_files
    assert files is not None and split.files is not None
    if files.cache == "none":
        return None
    return _decoded_pool(split.files, files)[0]


# The last folder decoded in this process: (its file array, which the three splits share, its decoding, the result).
_last_pool: tuple[np.ndarray, ImageFiles, tuple[np.ndarray, tuple[int, ...]]] | None = None


def _decoded_pool(paths: np.ndarray, files: ImageFiles) -> tuple[np.ndarray, tuple[int, ...]]:
    """The folder's images decoded (in memory, or memory-mapped from the disk cache, written once) and the
    positions that failed to decode; kept for the process's next run on the same files (a sweep's trials)."""
    global _last_pool
    if _last_pool is None or _last_pool[0] is not paths or _last_pool[1] != files:
        _last_pool = None  # the previous folder's memory can go first
        _last_pool = (paths, files, _decode_pool(paths, files))
    return _last_pool[2]


def _decode_pool(paths: np.ndarray, files: ImageFiles) -> tuple[np.ndarray, tuple[int, ...]]:
    if files.cache == "disk":
        cached = cache.read_cache(files, len(paths))
        if cached is None:
            print(f"data.cache=disk: decoding {len(paths):,} images into {cache.cache_file(files)}", flush=True)
            cache.write_cache(files, len(paths), lambda pixels: _decode_into(pixels, paths, files))
            cached = cache.read_cache(files, len(paths))
        assert cached is not None
        pixels, failed = cached
    else:
        pixels = np.empty((len(paths), files.height, files.width, files.channels), np.uint8)
        failed = _decode_into(pixels, paths, files)
    if failed and not files.skip_bad_images:
        raise PipelineError(f"{paths[failed[0]]}: cannot be decoded by TensorFlow"
                            f"{f' ({len(failed)} files)' if len(failed) > 1 else ''}; fix or remove it, or set "
                            "data.skip_bad_images=true to leave such files out")
    return pixels, tuple(failed)


def _decode_into(pixels: np.ndarray, paths: np.ndarray, files: ImageFiles) -> list[int]:
    """Decode every file into `pixels`, in parallel; the positions that failed to decode (left zero)."""
    with tf.device("/CPU:0"):
        positions = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
        decoded = positions.map(lambda position, path: (position, _decode(path, files)), num_parallel_calls=AUTOTUNE)
        seen = np.zeros(len(paths), bool)
        for batch_positions, images in decoded.ignore_errors().batch(DECODE_BATCH).prefetch(2):
            indices = batch_positions.numpy()
            pixels[indices] = images.numpy()
            seen[indices] = True
    return np.flatnonzero(~seen).tolist()


def without_undecodable(data: Dataset) -> Dataset:
    """The dataset less the files its cache found undecodable (with data.skip_bad_images), which join `skipped`."""
    files = data.image_files
    if files is None or files.cache == "none" or data.train.files is None:
        return data
    failed = _decoded_pool(data.train.files, files)[1]
    if not failed:
        return data
    names = tuple(str(data.train.files[position]) for position in failed)
    print(f"data.skip_bad_images: left out {len(failed)} more files that TensorFlow cannot decode (first: {names[0]})")
    keep = {name: split.take(~np.isin(split.rows, failed)) for name, split in data.splits().items()}
    return dataclasses.replace(data, train=keep["train"], validation=keep["validation"], test=keep["test"],
                               image_files=dataclasses.replace(files, skipped=files.skipped + names))


def undecodable_file(data: Dataset, split: Split) -> str | None:
    """After a decode error mid-epoch: the first file of `split` TensorFlow cannot decode (one decoding pass)."""
    if data.image_files is None or split.files is None:
        return None
    rows = np.unique(split.rows)
    failed = _decode_into(np.empty((len(rows), data.image_files.height, data.image_files.width,
                                    data.image_files.channels), np.uint8), split.files[rows], data.image_files)
    return str(split.files[rows[failed[0]]]) if failed else None


# --- augmentation ---------------------------------------------------------------------------------


def augmentation(settings: DataSettings, input_shape: tuple[int, int, int], seed: int) -> keras.Sequential | None:
    """data.augment as one Keras model of preprocessing layers, each seeded, tried on a batch of the data's shape;
    one-line errors for what cannot be."""
    if not settings.augment:
        return None
    augment = keras.Sequential([_augment_layer(entry, index, seed + index)
                                for index, entry in enumerate(settings.augment)], name="augment")
    try:
        shape = tuple(augment(np.zeros((1, *input_shape), np.float32), training=True).shape[1:])
    except Exception as error:  # noqa: BLE001 - shape and argument errors surface only when a layer runs
        raise PipelineError(f"data.augment cannot take {input_shape} images: {one_line(error)}") from None
    if shape != input_shape:
        raise PipelineError(f"data.augment turns {input_shape} images into {shape}; it must keep their shape "
                            "(set the size with data.image_size)")
    return augment


def _augment_layer(entry: LayerEntry, index: int, seed: int) -> keras.layers.Layer:
    name, arguments = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
    arguments = dict(arguments or {})
    key = f"data.augment[{index}]"
    allowed = _preprocessing_layers()
    layer_class = allowed.get(name)
    if layer_class is None:
        if isinstance(getattr(keras.layers, name, None), type):
            raise PipelineError(f"{key}={name}: not a preprocessing layer; allowed: {', '.join(sorted(allowed))}")
        close = difflib.get_close_matches(name, list(allowed), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else f"allowed: {', '.join(sorted(allowed))}"
        raise PipelineError(f"{key}={name}: not a Keras preprocessing layer; {hint}")
    if "seed" in inspect.signature(layer_class).parameters and "seed" not in arguments:
        arguments["seed"] = seed
    try:
        return layer_class(**arguments)
    except Exception as error:  # noqa: BLE001 - Keras raises TypeError or ValueError for bad arguments
        raise PipelineError(f"{key} ({name}): bad arguments {_shown(arguments)}: {one_line(error)}") from None


def _shown(arguments: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in arguments.items() if key != "seed"}


@functools.cache
def _preprocessing_layers() -> dict[str, type]:
    """Keras's image preprocessing and augmentation layers (RandomFlip, RandomRotation, Resizing, ...)."""
    return {name: value for name, value in vars(keras.layers).items()
            if isinstance(value, type) and issubclass(value, keras.layers.Layer)
            and ".layers.preprocessing.image_preprocessing." in value.__module__}
