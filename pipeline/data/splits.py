"""Seeded, stratified held-out sets (validation, and test for sources without their own)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.data.dataset import ImageFiles, Split
from pipeline.errors import PipelineError


@dataclass(frozen=True, eq=False)
class Source:
    """What a reader returns: the training pool (validation is carved from it later), the test split, the classes."""

    train: Split
    test: Split
    class_names: tuple[str, ...]
    image_files: ImageFiles | None = None


def hold_out(pool: Split, fraction: float, seed: int, key: str, held: str) -> tuple[Split, Split]:
    """Split off `fraction` of the images (rounded up), stratified by label whenever every class fits both sides.
    Both sides are shuffled with the seed; only row indices move."""
    n_held = math.ceil(fraction * len(pool))
    n_kept = len(pool) - n_held
    if n_held < 1 or n_kept < 1:
        # Validation can't be empty either: the trainer monitors it for checkpoints.
        raise PipelineError(
            f"{key}={fraction} leaves {n_held} {held} and {n_kept} training images out of {len(pool)}; "
            f"allowed: a fraction that leaves at least 1 image on each side"
        )
    from sklearn.model_selection import train_test_split  # slow to import: not before the data passed its checks

    class_sizes = np.unique(pool.labels, return_counts=True)[1]
    stratify = pool.labels if class_sizes.min() >= 2 and min(n_held, n_kept) >= len(class_sizes) else None
    kept, held_out = train_test_split(np.arange(len(pool)), test_size=n_held, random_state=seed, stratify=stratify)
    return pool.take(kept), pool.take(held_out)


def fold(pool: Split, k: int, index: int, seed: int) -> tuple[Split, Split]:
    """Fold `index` of `k` seeded folds of the pool as the held-out side, the other folds as the kept side (shuffled
    with the seed, as `hold_out`'s); stratified by label whenever every class has k images."""
    if len(pool) < k:
        raise PipelineError(f"data.fold.k={k}: more folds than the {len(pool)} training images; "
                            f"allowed: 2..{len(pool)}")
    from sklearn.model_selection import KFold, StratifiedKFold  # slow to import: not before the data passed its checks

    stratified = np.unique(pool.labels, return_counts=True)[1].min() >= k
    folds = StratifiedKFold(k, shuffle=True, random_state=seed) if stratified else KFold(k, shuffle=True,
                                                                                           random_state=seed)
    kept, held_out = list(folds.split(np.zeros(len(pool)), pool.labels))[index]
    return pool.take(np.random.default_rng(seed).permutation(kept)), pool.take(held_out)


def whole(labels: np.ndarray, *, pixels: np.ndarray | None = None, files: np.ndarray | None = None,
          scale: float = 1 / 255) -> Split:
    """A pool of images as one split, in order."""
    return Split(labels=labels, rows=np.arange(len(labels)), pixels=pixels, files=files, scale=scale)
