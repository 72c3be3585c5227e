"""data=images: a folder with one sub-folder of images per class (sorted names give the class indices).

The files are listed and scanned here, before TensorFlow loads: each file's header is read (not its pixels) and its
end marker checked, which finds files that are not images and truncated downloads in a fraction of a decode. The
input pipeline (`pipeline.inputs`) decodes them.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

from pipeline.config import ImagesData
from pipeline.data.dataset import ImageFiles
from pipeline.data.splits import Source, hold_out, whole
from pipeline.errors import PipelineError, one_line

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those keras.utils.image_dataset_from_directory reads
DECODABLE_FORMATS = ("BMP", "GIF", "JPEG", "PNG")  # what tf.io.decode_image reads
TAIL_BYTES = 4096  # where an image's end marker is looked for: some cameras append data after it


def source_paths(settings: ImagesData) -> list[Path]:
    """The folder and its class folders: adding, removing or renaming a file changes one of their stamps."""
    root = Path(settings.path).expanduser()
    return [root, *(class_folders(root) if root.is_dir() else [])]


def class_folders(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if path.is_dir() and not _hidden(path.name))


def read(settings: ImagesData) -> Source:
    root = Path(settings.path).expanduser()
    where = f"data.path={settings.path}"
    expected = f"expected one sub-folder of images per class, e.g. {root}/cat/1.png"
    if not root.is_dir():
        raise PipelineError(f"{where}: no such folder; {expected}")
    class_dirs = class_folders(root)
    if not class_dirs:
        problem = "has no class sub-folders" if any(root.iterdir()) else "is empty"
        raise PipelineError(f"{where}: {problem}; {expected}")
    if len(class_dirs) < 2:
        raise PipelineError(f"{where}: only one class folder ('{class_dirs[0].name}'); need at least 2; {expected}")
    listed = _scan(class_dirs)
    bad = {file.path: file.problem for files in listed for file in files if file.problem}
    if bad:
        _report_bad(bad, sum(map(len, listed)), settings)
    per_class = [[file for file in files if not file.problem] for files in listed]
    for folder, files in zip(class_dirs, per_class):
        if not files:
            allowed = ", ".join(IMAGE_SUFFIXES)
            raise PipelineError(f"{where}: class folder '{folder.name}' holds no images; allowed: {allowed} files")
    entries = [file for files in per_class for file in files]
    labels = np.repeat(np.arange(len(class_dirs), dtype=np.int32), [len(files) for files in per_class])
    pool = whole(labels, files=np.array([file.path for file in entries]))
    train, test = hold_out(pool, settings.test_fraction, settings.seed, "data.test_fraction", "test")
    decoding = _decoding(settings, entries, skipped=tuple(bad))
    return Source(train, test, tuple(folder.name for folder in class_dirs), decoding)


def _hidden(name: str) -> bool:
    return name.startswith(".")  # .ipynb_checkpoints, .DS_Store: never classes nor images, at any depth


class ScannedFile(NamedTuple):
    path: str
    size: int
    modified_ns: int
    problem: str | None  # why TensorFlow could not decode it; None if it looks whole


def _scan(class_dirs: list[Path]) -> list[list[ScannedFile]]:
    """Every class folder's files, listed and scanned; in parallel processes (one class folder a task) until
    TensorFlow is loaded (forking a process that runs TensorFlow's threads is not safe)."""
    if "tensorflow" in sys.modules or len(class_dirs) < 2 or (os.cpu_count() or 1) < 2:
        return [_scan_class(folder) for folder in class_dirs]
    workers = min(os.cpu_count() or 1, len(class_dirs))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_scan_class, class_dirs))


def _scan_class(folder: Path) -> list[ScannedFile]:
    """A class folder's image files, sub-folders included (hidden ones skipped), sorted, each scanned."""
    found = []
    for directory, subfolders, names in os.walk(folder):
        subfolders[:] = [name for name in subfolders if not _hidden(name)]
        for name in names:
            path = Path(directory) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and not _hidden(name):
                stat = path.stat()
                found.append(ScannedFile(str(path), stat.st_size, stat.st_mtime_ns, scan_problem(path)))
    return sorted(found)


def scan_problem(path: Path) -> str | None:
    """Why TensorFlow could not decode this file, from its header and its last bytes; None if it looks whole."""
    try:
        with Image.open(path) as image:
            image_format, mode = image.format, image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"not an image ({one_line(error)})"
    if image_format not in DECODABLE_FORMATS:
        return f"a {image_format} image, which TensorFlow cannot decode; allowed: {', '.join(DECODABLE_FORMATS)}"
    if image_format == "BMP" and mode == "1":
        return "a 1-bit BMP, which TensorFlow cannot decode; save it as PNG"
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(max(0, size - TAIL_BYTES))
        tail = file.read()
        file.seek(0)
        head = file.read(6)
    if not _ends_whole(image_format, head, tail, size):
        return f"truncated (no {image_format} end marker)"
    return None


def _ends_whole(image_format: str, head: bytes, tail: bytes, size: int) -> bool:
    if image_format == "JPEG":
        return b"\xff\xd9" in tail  # EOI; inside the compressed data 0xFF is always followed by 0x00 or a restart
    if image_format == "PNG":
        return b"IEND" in tail
    if image_format == "GIF":
        return tail.rstrip(b"\x00").endswith(b";")
    declared = int.from_bytes(head[2:6], "little")  # BMP: the header's file size (0 when the writer left it out)
    return size >= declared


def _report_bad(bad: dict[str, str], total: int, settings: ImagesData) -> None:
    (first, problem), count = next(iter(bad.items())), len(bad)
    if not settings.skip_bad_images:
        others, them = (f"; {count} of {total} files are not readable images", "them") if count > 1 else ("", "it")
        raise PipelineError(f"{first}: {problem}{others}; fix or remove {them}, or set data.skip_bad_images=true "
                            "to leave such files out")
    print(f"data.skip_bad_images: left out {count} of {total} files that are not readable images "
          f"(first: {first}: {problem}); their list is logged to MLflow")


def _decoding(settings: ImagesData, entries: list[ScannedFile], skipped: tuple[str, ...]) -> ImageFiles:
    digest = hashlib.sha256()
    for file in entries:
        digest.update(f"{file.path}\0{file.size}\0{file.modified_ns}\n".encode())
    height, width = settings.image_size
    channels: Literal[1, 3] = 1 if settings.color_mode == "grayscale" else 3
    cache = settings.cache
    if cache == "auto":
        decoded_mb = len(entries) * height * width * channels / 2**20
        cache = "memory" if decoded_mb <= settings.memory_budget_mb else "none"
    return ImageFiles(folder=str(Path(settings.path).expanduser()), height=height, width=width, channels=channels,
                      cache=cache, cache_dir=settings.cache_dir, digest=digest.hexdigest()[:16], skipped=skipped,
                      skip_bad_images=settings.skip_bad_images)
