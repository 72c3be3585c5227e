"""data=npz on tiny real files the tests write: the arrays read, and a file that cannot be read named."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data import load_data
from tests.pipeline.data.conftest import (
    GRAY_OF_LABEL,
    assert_images_match_labels,
    error_message,
    labeled_arrays,
    npz_settings,
    write_npz,
)


def test_npz_uint8_images_are_scaled_and_validation_is_stratified(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", labeled_arrays())
    dataset = load_data(npz_settings(path))

    assert dataset.class_names == ("0", "1", "2", "3")  # the largest training label + 1
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (36, 4, 12)
    assert sorted(dataset.validation.labels) == [0, 1, 2, 3]
    assert_images_match_labels(dataset, GRAY_OF_LABEL)


def test_npz_float_rgb_images_and_num_classes_are_kept(tmp_path: Path) -> None:
    arrays = labeled_arrays()
    arrays["x_train"] = np.repeat(arrays["x_train"][..., None] / 255.0, 3, axis=-1)
    arrays["x_test"] = np.repeat(arrays["x_test"][..., None] / 255.0, 3, axis=-1)
    path = write_npz(tmp_path / "rgb.npz", arrays)
    dataset = load_data(npz_settings(path, "data.num_classes=6", "data.max_train_samples=8"))

    assert dataset.input_shape == (5, 5, 3) and dataset.num_classes == 6 and len(dataset.train) == 8
    assert_images_match_labels(dataset, np.repeat(GRAY_OF_LABEL, 3, axis=1))


def test_npz_missing_file_is_named(tmp_path: Path) -> None:
    message = error_message(npz_settings(tmp_path / "absent.npz"))
    assert f"{tmp_path / 'absent.npz'}: no such file" in message and "x_train, y_train, x_test, y_test" in message


def test_npz_that_is_not_an_archive_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.npz").write_text("not numpy at all")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("notes.npz", "array.npy"):
        assert f"{tmp_path / name}: not a .npz archive" in error_message(npz_settings(tmp_path / name))


def test_npz_truncated_or_corrupted_archive_is_named(tmp_path: Path) -> None:
    raw = write_npz(tmp_path / "good.npz", labeled_arrays()).read_bytes()
    truncated, corrupted = tmp_path / "truncated.npz", tmp_path / "corrupted.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    corrupted.write_bytes(raw[:200] + bytes(100) + raw[300:])  # same size, zeros inside the first array's data

    assert "not a .npz archive" in error_message(npz_settings(truncated))
    assert f"{corrupted}: corrupt .npz archive" in error_message(npz_settings(corrupted))
