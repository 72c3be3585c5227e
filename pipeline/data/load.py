"""`load_data`: the configured source's reader, the validation split, and a one-dataset cache."""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

from pipeline.config import DataSettings
from pipeline.data import digits, fashion_mnist, images, mnist, npz
from pipeline.data.dataset import Dataset
from pipeline.data.splits import hold_out

READERS: dict[str, ModuleType] = {
    "digits": digits, "mnist": mnist, "fashion_mnist": fashion_mnist, "npz": npz, "images": images,
}


def load_data(settings: DataSettings) -> Dataset:
    """Read the configured source, then carve validation out of the training split (both seeded).

    The last dataset is kept while its files are unchanged, so a process running many pipelines on the same data
    (a sweep worker, or the CLI checking the data before it imports the pipeline) reads it once; its arrays are
    read-only, so no run can alter the next one's data.
    """
    return _load_unchanged(settings, _source_stamp(settings))


def _source_stamp(settings: DataSettings) -> tuple[tuple[str, int, int], ...]:
    """Modification time and size of what the source reads."""
    paths: list[Path] = READERS[settings.name].source_paths(settings)
    stats = [(str(path), path.stat()) for path in paths if path.exists()]
    return tuple((name, stat.st_mtime_ns, stat.st_size) for name, stat in stats)


@functools.lru_cache(maxsize=1)
def _load_unchanged(settings: DataSettings, stamp: tuple[tuple[str, int, int], ...]) -> Dataset:
    train, test, class_names = READERS[settings.name].read(settings)
    train, val = hold_out(train, settings.val_fraction, settings.seed, "data.val_fraction", "validation")
    if settings.max_train_samples is not None:
        # The split above shuffled the training images with the seed: the first n are a seeded random subset.
        train = (train[0][: settings.max_train_samples], train[1][: settings.max_train_samples])
    dataset = Dataset(
        source=settings.name,
        x_train=train[0], y_train=train[1],
        x_val=val[0], y_val=val[1],
        x_test=test[0], y_test=test[1],
        class_names=class_names,
    )
    for x, y in dataset.splits().values():
        x.flags.writeable = y.flags.writeable = False
    return dataset
