"""The run's data as MLflow dataset inputs: each split by name and digest, never the pixels themselves.

Arrays are MLflow NumPy datasets (MLflow hashes a sample of them); an image folder's splits are metadata-only
datasets whose digest covers their files' paths, sizes and modification times, and whose source is the folder.
"""

from __future__ import annotations

import functools
import hashlib

import mlflow
import mlflow.data
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.numpy_dataset import from_numpy
from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]  # MLflow makes it at import
from mlflow.types import ColSpec, DataType, Schema

from pipeline.data import Dataset
from pipeline.data.dataset import Split

SKIPPED_IMAGES = "data/skipped_images.txt"  # the files data.skip_bad_images left out, as a run artifact


def log_dataset_inputs(data: Dataset, splits: tuple[str, ...] = ("train", "validation", "test")) -> None:
    """Into the active run, in one call."""
    datasets: list[mlflow.data.Dataset | None] = [mlflow_dataset(data, split) for split in splits]
    mlflow.log_inputs(datasets, contexts=list(splits), tags_list=[None] * len(splits))


@functools.lru_cache(maxsize=4)  # a sweep's trials share one (read-only) dataset
def mlflow_dataset(data: Dataset, split: str) -> mlflow.data.Dataset:
    chosen, name = data.splits()[split], f"{data.source}-{split}"
    if chosen.pixels is not None:
        return from_numpy(chosen.pixels[chosen.rows], targets=chosen.labels, name=name)
    assert data.image_files is not None and chosen.files is not None
    schema = Schema([ColSpec(DataType.string, "file"), ColSpec(DataType.integer, "label")])
    return MetaDataset(  # type: ignore[abstract]  # MLflow leaves `profile` abstract; Dataset is no ABC
        LocalArtifactDatasetSource(data.image_files.folder), name=name, digest=_split_digest(data, chosen),
        schema=schema)


def _split_digest(data: Dataset, split: Split) -> str:
    """The folder's digest (its files, sizes, times), the decoding, and which of its files this split holds."""
    files = data.image_files
    assert files is not None
    digest = hashlib.sha256(f"{files.digest}:{files.height}x{files.width}x{files.channels}:".encode())
    digest.update(split.rows.tobytes())
    return digest.hexdigest()[:8]
