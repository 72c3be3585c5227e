"""The data sources: one `Dataset` (train / validation / test) from the `data` config group.

Sources: scikit-learn's bundled digits, Keras's MNIST and Fashion-MNIST files, a .npz file in
mnist.npz layout, or a folder of images with one sub-folder per class. Every bad input is a
one-line `PipelineError`. TensorFlow is imported only to download Keras's files.
"""

from __future__ import annotations

import functools
import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

from pipeline.config import DataSettings, DigitsData, ImagesData, KerasData, NpzData
from pipeline.dataset import Dataset
from pipeline.errors import PipelineError

Split = tuple[np.ndarray, np.ndarray]  # (images, labels)

DIGIT_NAMES = tuple(str(digit) for digit in range(10))
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
# data.name -> (folder under data.cache_dir, file names), as Keras's own loaders (keras.datasets.mnist /
# fashion_mnist) lay them out.
KERAS_FILES = {"mnist": ("", ("mnist.npz",)), "fashion_mnist": ("fashion-mnist", FASHION_FILES)}
NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # those keras.utils.image_dataset_from_directory reads


def load_data(settings: DataSettings) -> Dataset:
    """Read the configured source, then carve validation out of the training split (both seeded).

    The last dataset is kept while its files are unchanged, so a process running many pipelines on the same data
    (a sweep worker) reads it once; its arrays are read-only, so no run can alter the next one's data.
    """
    return _load_unchanged(settings, _source_stamp(settings))


def _source_stamp(settings: DataSettings) -> tuple[tuple[str, int, int], ...]:
    """Modification time and size of what the source reads (for an image folder: it and its class folders)."""
    match settings:
        case NpzData():
            paths = [Path(settings.path).expanduser()]
        case ImagesData():
            root = Path(settings.path).expanduser()
            paths = [root, *(sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])]
        case KerasData():
            paths = _keras_paths(settings)
        case _:
            paths = []
    stats = [(str(path), path.stat()) for path in paths if path.exists()]
    return tuple((name, stat.st_mtime_ns, stat.st_size) for name, stat in stats)


@functools.lru_cache(maxsize=1)
def _load_unchanged(settings: DataSettings, stamp: tuple[tuple[str, int, int], ...]) -> Dataset:
    train, test, class_names = _read_source(settings)
    train, val = _hold_out(train, settings.val_fraction, settings.seed, "data.val_fraction", "validation")
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


def _read_source(settings: DataSettings) -> tuple[Split, Split, tuple[str, ...]]:
    match settings:
        case DigitsData():
            return _read_digits(settings)
        case KerasData(name="mnist"):
            (path,) = _fetch(settings)
            train, test, _ = _labeled_splits(_load_npz(path, str(path)), 10, str(path))
            return train, test, DIGIT_NAMES
        case KerasData():
            paths = _fetch(settings)
            arrays = dict(zip(("y_train", "x_train", "y_test", "x_test"), map(_read_idx, paths)))
            train, test, _ = _labeled_splits(arrays, 10, str(paths[0].parent))
            return train, test, FASHION_NAMES
        case NpzData():
            where = f"data.path={settings.path}"
            arrays = _load_npz(Path(settings.path).expanduser(), where)
            train, test, num_classes = _labeled_splits(arrays, settings.num_classes, where)
            return train, test, tuple(str(label) for label in range(num_classes))
        case ImagesData():
            return _read_image_folder(settings)


# --- splitting --------------------------------------------------------------------------------


def _hold_out(pool: Split, fraction: float, seed: int, key: str, held: str) -> tuple[Split, Split]:
    """Split off `fraction` of the images (rounded up), stratified by label whenever every class fits both sides."""
    x, y = pool
    n_held = math.ceil(fraction * len(y))
    n_kept = len(y) - n_held
    if n_held < 1 or n_kept < 1:
        # Validation can't be empty either: the trainer monitors it for checkpoints.
        raise PipelineError(
            f"{key}={fraction} leaves {n_held} {held} and {n_kept} training images out of {len(y)}; "
            f"allowed: a fraction that leaves at least 1 image on each side"
        )
    class_sizes = np.unique(y, return_counts=True)[1]
    stratify = y if class_sizes.min() >= 2 and min(n_held, n_kept) >= len(class_sizes) else None
    x_kept, x_held, y_kept, y_held = train_test_split(x, y, test_size=n_held, random_state=seed, stratify=stratify)
    return (x_kept, y_kept), (x_held, y_held)


# --- digits -----------------------------------------------------------------------------------


def _read_digits(settings: DigitsData) -> tuple[Split, Split, tuple[str, ...]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]  # pixel values are 0..16
    y = digits.target.astype(np.int32)
    train, test = _hold_out((x, y), settings.test_fraction, settings.seed, "data.test_fraction", "test")
    return train, test, DIGIT_NAMES


# --- Keras's MNIST and Fashion-MNIST files ----------------------------------------------------


def _keras_paths(settings: KerasData) -> list[Path]:
    subdir, file_names = KERAS_FILES[settings.name]
    return [Path(settings.cache_dir).expanduser() / subdir / name for name in file_names]


def _fetch(settings: KerasData) -> list[Path]:
    """Paths of Keras's files in cache_dir/<folder>, downloading the missing ones when allowed."""
    subdir, file_names = KERAS_FILES[settings.name]
    paths = _keras_paths(settings)
    folder = paths[0].parent
    missing = [path.name for path in paths if not path.is_file()]
    alternative = f"put {', '.join(file_names)} in {folder}/, or use data=npz data.path=/path/to/file.npz"
    if missing and not settings.download:
        raise PipelineError(
            f"data={settings.name}: {', '.join(missing)} not in {folder}/ and data.download=false; {alternative}"
        )
    return [_download(settings, subdir, path.name, alternative) if path.name in missing else path for path in paths]


def _download(settings: KerasData, subdir: str, file_name: str, alternative: str) -> Path:
    from keras.utils import get_file  # Keras loads TensorFlow: import it only when a download is needed

    origin = f"{settings.origin.rstrip('/')}/{file_name}"
    cache_dir = Path(settings.cache_dir).expanduser()
    try:
        # get_file falls back to /tmp/.keras when cache_dir does not exist yet: create it first.
        (cache_dir / subdir).mkdir(parents=True, exist_ok=True)
        return Path(get_file(file_name, origin=origin, cache_dir=str(cache_dir), cache_subdir=subdir))
    except Exception as error:  # any failure (no network, HTTP error, disk) means the same to the user
        reason = _one_line(error)
        raise PipelineError(f"data={settings.name}: could not download {origin} ({reason}); {alternative}") from None


def _read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX array (MNIST's format): 2 zero bytes, type 0x08 (uint8), rank, big-endian uint32 sizes, data."""
    try:
        with gzip.open(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, zlib.error) as error:
        reason = _one_line(error)
        raise PipelineError(f"{path}: not a readable gzip file ({reason}); delete it to download it again") from None
    rank = raw[3] if len(raw) >= 4 and raw[:3] == b"\x00\x00\x08" else 0
    start = 4 + 4 * rank
    sizes = struct.unpack(f">{rank}I", raw[4:start]) if len(raw) >= start else ()
    if not sizes or len(raw) - start != math.prod(sizes):
        raise PipelineError(f"{path}: not an IDX file of uint8 (bad header or size); delete it to download it again")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(sizes)


# --- arrays in mnist.npz layout ---------------------------------------------------------------


def _load_npz(path: Path, where: str) -> dict[str, np.ndarray]:
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
        raise PipelineError(f"{where}: corrupt .npz archive ({_one_line(error)})") from None


def _labeled_splits(
    arrays: dict[str, np.ndarray], num_classes: int | None, where: str
) -> tuple[Split, Split, int]:
    """Checked train and test splits from raw arrays, and the number of classes (given, or largest y_train + 1)."""
    splits = {}
    for split in ("train", "test"):
        images = _images(arrays[f"x_{split}"], f"x_{split}", where)
        labels = _labels(arrays[f"y_{split}"], f"y_{split}", where)
        if len(images) != len(labels):
            raise PipelineError(
                f"{where}: x_{split} has {len(images)} images but y_{split} has {len(labels)} labels; they must match"
            )
        splits[split] = (images, labels)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        raise PipelineError(
            f"{where}: x_test images are {x_test.shape[1:]} but x_train images are {x_train.shape[1:]}; they must match"
        )
    derived = "" if num_classes else ": the largest y_train label + 1; set data.num_classes to allow more"
    num_classes = num_classes or int(y_train.max()) + 1
    if num_classes < 2:
        raise PipelineError(f"{where}: num_classes={num_classes}; a classifier needs at least 2 classes")
    for name, labels in (("y_train", y_train), ("y_test", y_test)):
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.size:
            allowed = f"0..{num_classes - 1} (num_classes={num_classes}{derived})"
            raise PipelineError(f"{where}: {name} holds label {outside[0]}; allowed: {allowed}")
    return (x_train, y_train.astype(np.int32)), (x_test, y_test.astype(np.int32)), num_classes


def _images(array: np.ndarray, name: str, where: str) -> np.ndarray:
    """float32 (n, h, w, c) in [0, 1]: integer pixels must be 0..255 (scaled by 1/255), float pixels already 0..1.

    Float pixels above 1 are an error rather than guessed to be 0..255: a wrong guess would train silently on bad data.
    """
    shape = "allowed: (n, height, width) or (n, height, width, channels) with 1 or 3 channels last"
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3)):
        raise PipelineError(f"{where}: {name} has shape {array.shape}; {shape}")
    if len(array) == 0:
        raise PipelineError(f"{where}: {name} holds no images")
    images = array if array.ndim == 4 else array[..., np.newaxis]
    if np.issubdtype(images.dtype, np.integer):
        low, high, allowed = images.min(), images.max(), "integer pixels must be in 0..255"
        if low >= 0 and high <= 255:
            return images.astype(np.float32) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        low, high, allowed = images.min(), images.max(), "float pixels must be in [0, 1] (or save uint8 0..255)"
        if low >= 0.0 and high <= 1.0:  # NaN fails both comparisons
            return images.astype(np.float32)
    else:
        allowed = "uint8 (0..255) or float (0..1) pixels"
        raise PipelineError(f"{where}: {name} has dtype {images.dtype}; allowed: {allowed}")
    raise PipelineError(f"{where}: {name} holds pixel values in [{low}, {high}]; {allowed}")


def _labels(array: np.ndarray, name: str, where: str) -> np.ndarray:
    """int64 class indices: integers, or floats holding whole numbers."""
    if array.ndim != 1:
        allowed = "(n,) class indices (one-hot? save the argmax)"
        raise PipelineError(f"{where}: {name} has shape {array.shape}; allowed: {allowed}")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        fractional = array[array != np.round(array)]  # NaN included
        if not fractional.size:
            return array.astype(np.int64)
        bad = f"e.g. {fractional[0]}"
    else:
        bad = f"dtype {array.dtype}"
    raise PipelineError(f"{where}: {name} holds non-integer labels ({bad}); allowed: integer class indices")


# --- a folder of images, one sub-folder per class ---------------------------------------------


def _read_image_folder(settings: ImagesData) -> tuple[Split, Split, tuple[str, ...]]:
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
    train, test = _hold_out((x, y), settings.test_fraction, settings.seed, "data.test_fraction", "test")
    return train, test, tuple(folder.name for folder in class_dirs)


def _read_image(path: Path, settings: ImagesData) -> np.ndarray:
    """uint8 (h, w, c) after conversion to grayscale or RGB and resizing to data.image_size (height, width)."""
    height, width = settings.image_size
    mode = "L" if settings.color_mode == "grayscale" else "RGB"
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(mode).resize((width, height)))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise PipelineError(f"{path}: cannot read this image ({_one_line(error)}); fix or remove it") from None
    return pixels if pixels.ndim == 3 else pixels[..., np.newaxis]


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())
