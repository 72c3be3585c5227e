"""Helpers the data tests share: a source's settings, the one-line error a bad input gives, tiny labeled arrays."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.compose import compose_config, validate
from pipeline.config import DataSettings
from pipeline.data import Dataset, load_data
from pipeline.data.dataset import Split
from pipeline.errors import PipelineError

GRAY_OF_LABEL = 50 * np.arange(5)[:, None] / 255  # the pixel value labeled_arrays gives each label, after scaling


def data_settings(*overrides: str) -> DataSettings:
    return validate(compose_config(list(overrides))).data


def npz_settings(path: Path, *overrides: str) -> DataSettings:
    return data_settings("data=npz", f"data.path={path}", *overrides)


def error_message(settings: DataSettings) -> str:
    with pytest.raises(PipelineError) as caught:
        load_data(settings)
    message = str(caught.value)
    assert "\n" not in message
    return message


def labeled_arrays(n_train: int = 40, n_test: int = 12, classes: int = 4) -> dict[str, np.ndarray]:
    """uint8 5x5 images filled with 50 * label (up to 5 classes): each image can be checked against its label."""
    y_train = (np.arange(n_train) % classes).astype(np.uint8)
    y_test = (np.arange(n_test) % classes).astype(np.uint8)
    return {
        "x_train": np.broadcast_to(50 * y_train[:, None, None], (n_train, 5, 5)).copy(),
        "y_train": y_train,
        "x_test": np.broadcast_to(50 * y_test[:, None, None], (n_test, 5, 5)).copy(),
        "y_test": y_test,
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def assert_images_match_labels(dataset: Dataset, pixel_of_label: np.ndarray) -> None:
    """Every split's images, as the input pipeline hands them to the model, hold their label's pixel value."""
    from pipeline.inputs import split_images

    for name, split in dataset.splits().items():
        x, y = split_images(dataset, name), split.labels
        assert x.dtype == np.float32 and y.dtype == np.int32, name
        np.testing.assert_allclose(x, np.broadcast_to(pixel_of_label[y][:, None, None, :], x.shape), atol=1e-6)


def stored_pixels(split: Split) -> np.ndarray:
    """A split's images as the source holds them in memory (before the input pipeline scales them)."""
    assert split.pixels is not None
    return split.pixels[split.rows]


def run_cli_noting_tensorflow(*overrides: str) -> subprocess.CompletedProcess:
    """`python -m pipeline.run <overrides>` in a subprocess whose stdout ends with whether TensorFlow was imported
    (the CLI exits 2 through SystemExit; the wrapper reports afterwards)."""
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['pipeline.run', *{list(overrides)!r}]\n"
        "try:\n    runpy.run_module('pipeline.run', run_name='__main__')\n"
        "finally:\n    print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[3])
