"""data=digits: scikit-learn's bundled 8x8 digits (works offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import DigitsData
from pipeline.data.splits import Source, hold_out

DIGIT_NAMES = tuple(str(digit) for digit in range(10))


def source_paths(settings: DigitsData) -> list[Path]:
    return []  # bundled with scikit-learn: never changes


def read(settings: DigitsData) -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]  # pixel values are 0..16
    y = digits.target.astype(np.int32)
    train, test = hold_out((x, y), settings.test_fraction, settings.seed, "data.test_fraction", "test")
    return train, test, DIGIT_NAMES
