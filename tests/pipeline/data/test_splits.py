"""The held-out splits: stratified, seeded, and a validation fraction that leaves none refused."""

from __future__ import annotations

import numpy as np

from pipeline.data import load_data
from tests.pipeline.data.conftest import data_settings, error_message


def test_digits_are_split_stratified_scaled_and_seeded() -> None:
    dataset = load_data(data_settings())

    assert dataset.source == "digits"
    assert dataset.class_names == tuple("0123456789")
    assert dataset.input_shape == (8, 8, 1)
    assert (len(dataset.y_train), len(dataset.y_val), len(dataset.y_test)) == (1293, 144, 360)
    for x, y in dataset.splits().values():
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
        assert np.bincount(y, minlength=10).min() >= 10  # stratified: every digit in every split
    again, other_seed = load_data(data_settings()), load_data(data_settings("seed=7"))
    np.testing.assert_array_equal(again.x_val, dataset.x_val)
    assert not np.array_equal(other_seed.y_val, dataset.y_val)


def test_zero_validation_fraction_is_refused() -> None:
    message = error_message(data_settings("data.val_fraction=0"))
    assert "data.val_fraction=0.0" in message and "0 validation" in message
