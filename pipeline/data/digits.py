"""data=digits: scikit-learn's bundled 8x8 digits (works offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import DigitsData
from pipeline.data.splits import Source, hold_out, whole

DIGIT_NAMES = tuple(str(digit) for digit in range(10))


def source_paths(settings: DigitsData) -> list[Path]:
    return []  # bundled with scikit-learn: never changes


def read(settings: DigitsData) -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.astype(np.uint8)[..., np.newaxis]  # whole numbers 0..16
    pool = whole(digits.target.astype(np.int32), pixels=pixels, scale=1 / 16)
    train, test = hold_out(pool, settings.test_fraction, settings.seed, "data.test_fraction", "test")
    return Source(train, test, DIGIT_NAMES)
