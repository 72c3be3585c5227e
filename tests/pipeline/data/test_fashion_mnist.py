"""data=fashion_mnist read from gzipped IDX files the tests write, and a broken one named."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import load_data
from pipeline.data.fashion_mnist import FASHION_FILES, FASHION_NAMES
from tests.pipeline.data.conftest import (
    GRAY_OF_LABEL,
    assert_images_match_labels,
    data_settings,
    error_message,
    labeled_arrays,
)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_is_read_from_keras_idx_files(tmp_path: Path) -> None:
    arrays = labeled_arrays(n_train=30, n_test=10, classes=3)
    (tmp_path / "fashion-mnist").mkdir()
    for file_name, key in zip(FASHION_FILES, ("y_train", "x_train", "y_test", "x_test")):
        write_idx(tmp_path / "fashion-mnist" / file_name, arrays[key])
    dataset = load_data(data_settings("data=fashion_mnist", f"data.cache_dir={tmp_path}", "data.download=false"))

    assert dataset.class_names == FASHION_NAMES and dataset.class_names[0] == "T-shirt/top"
    assert dataset.input_shape == (5, 5, 1) and len(dataset.test) == 10
    assert_images_match_labels(dataset, GRAY_OF_LABEL)


@pytest.mark.parametrize(
    "content, expected",
    [(b"plain bytes", "not a readable gzip file"), (gzip.compress(b"\x00\x00\x0d\x01"), "not an IDX file")],
    ids=["not gzip", "float IDX"],
)
def test_fashion_mnist_broken_file_is_named(tmp_path: Path, content: bytes, expected: str) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for file_name in FASHION_FILES:
        (folder / file_name).write_bytes(content)
    message = error_message(data_settings("data=fashion_mnist", f"data.cache_dir={tmp_path}", "data.download=false"))
    assert message.startswith(f"{folder / FASHION_FILES[0]}: {expected}")
