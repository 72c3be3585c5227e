"""The dataset every data source produces and every other module consumes: three splits of labeled images,
each either pixels held in memory or image files the input pipeline (`pipeline.inputs`) decodes as it reads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: arrays have no plain ==
class Split:
    """One split's labels and where its images are: `rows` of a pool shared with the other splits, either
    `pixels` (n, height, width, channels) as stored, or image `files`. Splitting never copies images."""

    labels: np.ndarray  # int32 class indices, one per row
    rows: np.ndarray  # int64 indices into `pixels` or `files`
    pixels: np.ndarray | None = None  # uint8 (or float32 already in [0, 1]); times `scale` gives [0, 1]
    files: np.ndarray | None = None  # str paths, decoded to uint8
    scale: float = 1 / 255

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, positions: np.ndarray | slice) -> Split:
        """The images at `positions` of this split, in that order."""
        return replace(self, labels=self.labels[positions], rows=self.rows[positions])


@dataclass(frozen=True)
class ImageFiles:
    """How the input pipeline decodes a folder's files (data=images), and what the scan left out."""

    folder: str
    height: int
    width: int
    channels: Literal[1, 3]
    cache: Literal["memory", "disk", "none"]  # `auto` resolved when the folder was listed
    cache_dir: str
    digest: str  # of the file list, sizes and modification times: the disk cache's key and the run's lineage
    skipped: tuple[str, ...] = ()  # files the scan found not to be images, left out (data.skip_bad_images)
    skip_bad_images: bool = False


@dataclass(frozen=True, eq=False)
class Dataset:
    source: str
    train: Split
    validation: Split
    test: Split
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (height, width, channels) as the model sees it
    image_files: ImageFiles | None = None  # set when the images are files (data=images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def splits(self) -> dict[str, Split]:
        return dict(zip(SPLITS, (self.train, self.validation, self.test)))
