"""data=mnist read from a mnist.npz in Keras's cache folder."""

from __future__ import annotations

from pathlib import Path

from pipeline.data import load_data
from tests.pipeline.data.conftest import (
    GRAY_OF_LABEL,
    assert_images_match_labels,
    data_settings,
    labeled_arrays,
    write_npz,
)


def test_mnist_is_read_from_the_keras_cache(tmp_path: Path) -> None:
    arrays = labeled_arrays(n_train=50, n_test=20, classes=5)
    write_npz(tmp_path / "mnist.npz", arrays)
    dataset = load_data(data_settings("data=mnist", f"data.cache_dir={tmp_path}", "data.download=false"))

    assert dataset.source == "mnist" and dataset.class_names == tuple("0123456789")
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (45, 5, 20)
    assert_images_match_labels(dataset, GRAY_OF_LABEL)
