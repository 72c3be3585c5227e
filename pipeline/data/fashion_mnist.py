"""data=fashion_mnist: Keras's Fashion-MNIST, four gzipped IDX files in cache_dir/fashion-mnist/."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from pipeline.config import KerasData
from pipeline.data.checks import labeled_splits
from pipeline.data.keras_files import fetch, keras_paths
from pipeline.data.splits import Source
from pipeline.errors import PipelineError, one_line

FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FOLDER = "fashion-mnist"  # as keras.datasets.fashion_mnist lays it out
FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)


def source_paths(settings: KerasData) -> list[Path]:
    return keras_paths(settings, FOLDER, FASHION_FILES)


def read(settings: KerasData) -> Source:
    paths = fetch(settings, FOLDER, FASHION_FILES)
    arrays = dict(zip(("y_train", "x_train", "y_test", "x_test"), map(_read_idx, paths)))
    train, test, _ = labeled_splits(arrays, 10, str(paths[0].parent))
    return Source(train, test, FASHION_NAMES)


def _read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX array (MNIST's format): 2 zero bytes, type 0x08 (uint8), rank, big-endian uint32 sizes, data."""
    try:
        with gzip.open(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise PipelineError(
            f"{path}: not a readable gzip file ({one_line(error)}); delete it to download it again"
        ) from None
    rank = raw[3] if len(raw) >= 4 and raw[:3] == b"\x00\x00\x08" else 0
    start = 4 + 4 * rank
    sizes = struct.unpack(f">{rank}I", raw[4:start]) if len(raw) >= start else ()
    if not sizes or len(raw) - start != math.prod(sizes):
        raise PipelineError(f"{path}: not an IDX file of uint8 (bad header or size); delete it to download it again")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(sizes)
