"""The checks on a source's arrays, through data=npz: every bad array's one-line message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.pipeline.data.conftest import error_message, labeled_arrays, npz_settings, write_npz


def with_changes(**changes: np.ndarray | None) -> dict[str, np.ndarray]:
    arrays = labeled_arrays()
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    return arrays


BAD_ARRAYS = {
    "missing arrays": (with_changes(x_test=None, y_test=None), ["missing arrays x_test, y_test", "required: x_train"]),
    "length mismatch": (with_changes(y_train=np.zeros(39, np.uint8)), ["x_train has 40 images but y_train has 39"]),
    "fractional labels": (with_changes(y_train=np.full(40, 0.5)), ["y_train holds non-integer labels (e.g. 0.5)"]),
    "string labels": (with_changes(y_test=np.array(["cat"] * 12)), ["y_test holds non-integer labels (dtype <U3)"]),
    "one-hot labels": (with_changes(y_train=np.eye(4)[np.arange(40) % 4]), ["y_train has shape (40, 4)", "argmax"]),
    "negative label": (with_changes(y_train=np.r_[-1, np.arange(39) % 4]), ["y_train holds label -1", "0..3"]),
    "test label past the training ones": (
        with_changes(y_test=np.r_[9, np.arange(11) % 4]), ["y_test holds label 9", "allowed: 0..3", "data.num_classes"],
    ),
    "a single class": (with_changes(y_train=np.zeros(40, int), y_test=np.zeros(12, int)), ["num_classes=1"]),
    "flat images": (with_changes(x_train=np.zeros((40, 25), np.uint8)), ["x_train has shape (40, 25)", "(n, height"]),
    "channels first": (with_changes(x_test=np.zeros((12, 1, 5, 5), np.uint8)), ["x_test has shape (12, 1, 5, 5)"]),
    "float pixels above 1": (
        with_changes(x_train=np.full((40, 5, 5), 255.0)), ["x_train holds pixel values in [255.0, 255.0]", "[0, 1]"],
    ),
    "integer pixels above 255": (with_changes(x_test=np.full((12, 5, 5), 300, np.int16)), ["x_test holds", "0..255"]),
    "boolean pixels": (with_changes(x_train=np.zeros((40, 5, 5), bool)), ["x_train has dtype bool"]),
    "test images of another size": (with_changes(x_test=np.zeros((12, 6, 6), np.uint8)), ["x_test images are (6, 6"]),
    "no test images": (
        with_changes(x_test=np.zeros((0, 5, 5), np.uint8), y_test=np.zeros(0, np.uint8)), ["x_test holds no images"],
    ),
}


@pytest.mark.parametrize("arrays, expected", BAD_ARRAYS.values(), ids=BAD_ARRAYS.keys())
def test_npz_bad_arrays_are_named(tmp_path: Path, arrays: dict[str, np.ndarray], expected: list[str]) -> None:
    path = write_npz(tmp_path / "bad.npz", arrays)
    message = error_message(npz_settings(path))
    assert message.startswith(f"data.path={path}: ")
    for fragment in expected:
        assert fragment in message


def test_npz_num_classes_below_a_label_is_named(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", labeled_arrays())
    message = error_message(npz_settings(path, "data.num_classes=2"))
    assert "y_train holds label 2; allowed: 0..1 (num_classes=2)" in message
