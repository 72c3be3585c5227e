"""data=npz: a file in the layout of Keras's mnist.npz (x_train, y_train, x_test, y_test)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from pipeline.config import NpzData
from pipeline.data.checks import labeled_splits
from pipeline.data.splits import Source
from pipeline.errors import PipelineError, one_line

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def source_paths(settings: NpzData) -> list[Path]:
    return [Path(settings.path).expanduser()]


def read(settings: NpzData) -> Source:
    where = f"data.path={settings.path}"
    arrays = read_npz(Path(settings.path).expanduser(), where)
    train, test, num_classes = labeled_splits(arrays, settings.num_classes, where)
    return Source(train, test, tuple(str(label) for label in range(num_classes)))


def read_npz(path: Path, where: str) -> dict[str, np.ndarray]:
    """The four arrays of a .npz archive; `where` names it in errors."""
    expected = f"expected a .npz archive with arrays {', '.join(NPZ_ARRAYS)} (the layout of Keras's mnist.npz)"
    if not path.is_file():
        raise PipelineError(f"{where}: no such file; {expected}")
    if not zipfile.is_zipfile(path):  # .npz files are zip archives
        raise PipelineError(f"{where}: not a .npz archive; {expected}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in NPZ_ARRAYS if name not in archive.files]
            if missing:
                found = ", ".join(archive.files) or "none"
                raise PipelineError(
                    f"{where}: missing arrays {', '.join(missing)}; required: {', '.join(NPZ_ARRAYS)} (found: {found})"
                )
            return {name: archive[name] for name in NPZ_ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise PipelineError(f"{where}: corrupt .npz archive ({one_line(error)})") from None
