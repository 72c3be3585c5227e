"""Keras's dataset files (mnist, fashion_mnist) in data.cache_dir, as Keras's own loaders lay them out;
downloaded when missing and allowed."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import KerasData
from pipeline.errors import PipelineError, one_line


def keras_paths(settings: KerasData, folder: str, file_names: tuple[str, ...]) -> list[Path]:
    return [Path(settings.cache_dir).expanduser() / folder / name for name in file_names]


def fetch(settings: KerasData, folder: str, file_names: tuple[str, ...]) -> list[Path]:
    """Paths of the files in cache_dir/<folder>, downloading the missing ones when allowed."""
    paths = keras_paths(settings, folder, file_names)
    where = paths[0].parent
    missing = [path.name for path in paths if not path.is_file()]
    alternative = f"put {', '.join(file_names)} in {where}/, or use data=npz data.path=/path/to/file.npz"
    if missing and not settings.download:
        raise PipelineError(
            f"data={settings.name}: {', '.join(missing)} not in {where}/ and data.download=false; {alternative}"
        )
    return [_download(settings, folder, path.name, alternative) if path.name in missing else path for path in paths]


def _download(settings: KerasData, folder: str, file_name: str, alternative: str) -> Path:
    from keras.utils import get_file  # Keras loads TensorFlow: import it only when a download is needed

    origin = f"{settings.origin.rstrip('/')}/{file_name}"
    cache_dir = Path(settings.cache_dir).expanduser()
    try:
        # get_file falls back to /tmp/.keras when cache_dir does not exist yet: create it first.
        (cache_dir / folder).mkdir(parents=True, exist_ok=True)
        return Path(get_file(file_name, origin=origin, cache_dir=str(cache_dir), cache_subdir=folder))
    except Exception as error:  # any failure (no network, HTTP error, disk) means the same to the user
        raise PipelineError(
            f"data={settings.name}: could not download {origin} ({one_line(error)}); {alternative}"
        ) from None
