"""data.cache=disk: a folder's decoded images in one .npy file, keyed by its file list, image size and channels.

Written under a temporary name and renamed when complete, so processes decoding the same folder at once (a
sweep's workers, a multirun's jobs) each publish a whole file and readers never see a partial one. No TensorFlow
here: the input pipeline decodes (`pipeline.inputs`).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.data.dataset import ImageFiles


def cache_file(files: ImageFiles) -> Path:
    name = f"{files.digest}-{files.height}x{files.width}x{files.channels}"
    return Path(files.cache_dir).expanduser() / f"{name}.npy"


def read_cache(files: ImageFiles, count: int) -> tuple[np.ndarray, list[int]] | None:
    """The decoded images (memory-mapped, read-only) and the positions that failed to decode, if cached."""
    path = cache_file(files)
    failed_path = path.with_suffix(".failed.json")
    if not (path.is_file() and failed_path.is_file()):
        return None
    pixels = np.load(path, mmap_mode="r")
    if pixels.shape != (count, files.height, files.width, files.channels):
        return None  # another layout under the same name cannot happen unless a file was edited by hand
    return pixels, json.loads(failed_path.read_text())


def write_cache(files: ImageFiles, count: int, decode_into: Callable[[np.ndarray], list[int]]) -> None:
    """Decode into a new cache file: `decode_into` fills the array and returns the positions that failed."""
    path = cache_file(files)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    partial, failed_partial = (path.with_name(f".{path.stem}.{token}{suffix}") for suffix in (".npy", ".json"))
    try:
        pixels = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                           shape=(count, files.height, files.width, files.channels))
        failed = decode_into(pixels)
        pixels.flush()
        del pixels
        failed_partial.write_text(json.dumps(failed))
        os.replace(partial, path)  # the images first: a reader needs both files, and finds the failures last
        os.replace(failed_partial, path.with_suffix(".failed.json"))
    finally:
        partial.unlink(missing_ok=True)
        failed_partial.unlink(missing_ok=True)
