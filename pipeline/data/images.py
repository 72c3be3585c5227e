"""data=images: a folder with one sub-folder of images per class (sorted names give the class indices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import ImagesData
from pipeline.data.checks import one_line
from pipeline.data.splits import Source, hold_out
from pipeline.errors import PipelineError

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those keras.utils.image_dataset_from_directory reads


def source_paths(settings: ImagesData) -> list[Path]:
    """The folder and its class folders: adding, removing or renaming a file changes one of their stamps."""
    root = Path(settings.path).expanduser()
    return [root, *(sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])]


def read(settings: ImagesData) -> Source:
    root = Path(settings.path).expanduser()
    where = f"data.path={settings.path}"
    expected = f"expected one sub-folder of images per class, e.g. {root}/cat/1.png"
    if not root.is_dir():
        raise PipelineError(f"{where}: no such folder; {expected}")
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not class_dirs:
        problem = "has no class sub-folders" if any(root.iterdir()) else "is empty"
        raise PipelineError(f"{where}: {problem}; {expected}")
    if len(class_dirs) < 2:
        raise PipelineError(f"{where}: only one class folder ('{class_dirs[0].name}'); need at least 2; {expected}")
    files_per_class = [
        sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
        for folder in class_dirs
    ]
    for folder, files in zip(class_dirs, files_per_class):
        if not files:
            allowed = ", ".join(IMAGE_SUFFIXES)
            raise PipelineError(f"{where}: class folder '{folder.name}' holds no images; allowed: {allowed} files")
    pixels = np.stack([_read_image(path, settings) for files in files_per_class for path in files])
    x = pixels.astype(np.float32) / 255.0
    y = np.repeat(np.arange(len(class_dirs), dtype=np.int32), [len(files) for files in files_per_class])
    train, test = hold_out((x, y), settings.test_fraction, settings.seed, "data.test_fraction", "test")
    return train, test, tuple(folder.name for folder in class_dirs)


def _read_image(path: Path, settings: ImagesData) -> np.ndarray:
    """uint8 (h, w, c) after conversion to grayscale or RGB and resizing to data.image_size (height, width)."""
    height, width = settings.image_size
    mode = "L" if settings.color_mode == "grayscale" else "RGB"
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(mode).resize((width, height)))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PipelineError(f"{path}: cannot read this image ({one_line(error)}); fix or remove it") from None
    return pixels if pixels.ndim == 3 else pixels[..., np.newaxis]
