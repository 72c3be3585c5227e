"""Seeded, stratified held-out sets (validation, and test for sources without their own)."""

from __future__ import annotations

import math

import numpy as np

from pipeline.errors import PipelineError

Split = tuple[np.ndarray, np.ndarray]  # (images, labels)
Source = tuple[Split, Split, tuple[str, ...]]  # what a reader returns: train, test, class names


def hold_out(pool: Split, fraction: float, seed: int, key: str, held: str) -> tuple[Split, Split]:
    """Split off `fraction` of the images (rounded up), stratified by label whenever every class fits both sides."""
    x, y = pool
    n_held = math.ceil(fraction * len(y))
    n_kept = len(y) - n_held
    if n_held < 1 or n_kept < 1:
        # Validation can't be empty either: the trainer monitors it for checkpoints.
        raise PipelineError(
            f"{key}={fraction} leaves {n_held} {held} and {n_kept} training images out of {len(y)}; "
            f"allowed: a fraction that leaves at least 1 image on each side"
        )
    from sklearn.model_selection import train_test_split  # 1.9 s to import: not before the data passed its checks

    class_sizes = np.unique(y, return_counts=True)[1]
    stratify = y if class_sizes.min() >= 2 and min(n_held, n_kept) >= len(class_sizes) else None
    x_kept, x_held, y_kept, y_held = train_test_split(x, y, test_size=n_held, random_state=seed, stratify=stratify)
    return (x_kept, y_kept), (x_held, y_held)
