"""The held-out splits: stratified, seeded, and a validation fraction that leaves none refused."""

from __future__ import annotations

import numpy as np

from pipeline.data import load_data
from pipeline.data.splits import fold, hold_out, whole
from tests.pipeline.data.conftest import data_settings, error_message, stored_pixels


def test_digits_are_split_stratified_and_held_as_uint8_scaled_per_batch() -> None:
    dataset = load_data(data_settings())

    assert dataset.source == "digits"
    assert dataset.class_names == tuple("0123456789")
    assert dataset.input_shape == (8, 8, 1)
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (1293, 144, 360)
    for split in dataset.splits().values():
        pixels = stored_pixels(split)
        assert pixels.dtype == np.uint8 and pixels.max() * split.scale == 1.0  # 0..16, scaled by 1/16
        assert np.bincount(split.labels, minlength=10).min() >= 10  # stratified: every digit in every split
    rows = np.concatenate([split.rows for split in dataset.splits().values()])
    assert sorted(rows) == list(range(1797))  # the three splits share out every image once


def test_held_out_rows_depend_on_the_seed_alone() -> None:
    pool = whole(np.arange(100, dtype=np.int32) % 4)
    kept, held = hold_out(pool, 0.2, seed=3, key="data.val_fraction", held="validation")
    kept_again, held_again = hold_out(pool, 0.2, seed=3, key="data.val_fraction", held="validation")
    _, held_other_seed = hold_out(pool, 0.2, seed=4, key="data.val_fraction", held="validation")

    assert len(held) == 20 and np.bincount(held.labels).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(held.rows, held_again.rows)
    np.testing.assert_array_equal(kept.rows, kept_again.rows)
    assert not np.array_equal(np.sort(held.rows), np.sort(held_other_seed.rows))
    np.testing.assert_array_equal(held.labels, pool.labels[held.rows])  # labels travel with their rows


def test_zero_validation_fraction_is_refused() -> None:
    message = error_message(data_settings("data.val_fraction=0"))
    assert "data.val_fraction=0.0" in message and "0 validation" in message


def test_k_folds_validate_every_training_image_once_stratified_and_seeded() -> None:
    pool = whole(np.arange(90, dtype=np.int32) % 3)
    folds = [fold(pool, 3, index, seed=5) for index in range(3)]
    held = np.concatenate([validation.rows for _, validation in folds])
    assert sorted(held) == list(range(90))  # each image validates once
    for train, validation in folds:
        assert sorted([*train.rows, *validation.rows]) == list(range(90))
        assert np.bincount(validation.labels).tolist() == [10, 10, 10]
    assert [v.rows.tolist() for _, v in folds] == [v.rows.tolist() for _, v in
                                                   (fold(pool, 3, index, seed=5) for index in range(3))]
    assert folds[0][1].rows.tolist() != fold(pool, 3, 0, seed=6)[1].rows.tolist()


def test_the_loaded_datasets_fold_replaces_the_validation_fraction() -> None:
    dataset = load_data(data_settings("+data.fold={k: 4, index: 1}"))
    assert 1437 // 4 <= len(dataset.validation) <= 1437 // 4 + 1  # the 1,437 digits outside the test split
    assert len(dataset.train) + len(dataset.validation) == 1437


def test_with_a_fold_max_train_samples_bounds_the_images_folded() -> None:
    dataset = load_data(data_settings("+data.fold={k: 3, index: 0}", "data.max_train_samples=300"))
    assert (len(dataset.train), len(dataset.validation)) == (200, 100)
