"""data=mnist: Keras's MNIST, cache_dir/mnist.npz (downloaded there if missing)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import KerasData
from pipeline.data.checks import labeled_splits
from pipeline.data.digits import DIGIT_NAMES
from pipeline.data.keras_files import fetch, keras_paths
from pipeline.data.npz import read_npz
from pipeline.data.splits import Source

FOLDER, FILES = "", ("mnist.npz",)  # as keras.datasets.mnist lays it out


def source_paths(settings: KerasData) -> list[Path]:
    return keras_paths(settings, FOLDER, FILES)


def read(settings: KerasData) -> Source:
    (path,) = fetch(settings, FOLDER, FILES)
    train, test, _ = labeled_splits(read_npz(path, str(path)), 10, str(path))
    return Source(train, test, DIGIT_NAMES)
