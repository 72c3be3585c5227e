"""Every data source on tiny real files the tests write (or the bundled digits), and every bad input's message."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.compose import compose_config, validate
from pipeline.config import DataSettings
from pipeline.data import Dataset, load_data
from pipeline.data.fashion_mnist import FASHION_FILES, FASHION_NAMES
from pipeline.errors import PipelineError

KERAS_SOURCES = pytest.mark.parametrize(
    "source, folder, first_file", [("mnist", "", "mnist.npz"), ("fashion_mnist", "fashion-mnist", FASHION_FILES[0])]
)
CLOSED_PORT_ORIGIN = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once
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
    for split, (x, y) in dataset.splits().items():
        assert x.dtype == np.float32 and y.dtype == np.int32, split
        np.testing.assert_allclose(x, np.broadcast_to(pixel_of_label[y][:, None, None, :], x.shape), atol=1e-6)


# --- digits and the splits ---------------------------------------------------------------------


def test_digits_are_split_stratified_scaled_and_seeded() -> None:
    dataset = load_data(data_settings())

    assert dataset.source == "digits"
    assert dataset.class_names == tuple("0123456789")
    assert dataset.input_shape == (8, 8, 1)
    assert (len(dataset.y_train), len(dataset.y_val), len(dataset.y_test)) == (1293, 144, 360)
    for x, y in dataset.splits().values():
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
        assert np.bincount(y, minlength=10).min() >= 10  # stratified: every digit in every split
    again, other_seed = load_data(data_settings()), load_data(data_settings("seed=7"))
    np.testing.assert_array_equal(again.x_val, dataset.x_val)
    assert not np.array_equal(other_seed.y_val, dataset.y_val)


def test_max_train_samples_truncates_only_the_training_split() -> None:
    full = load_data(data_settings())
    tiny = load_data(data_settings("data.max_train_samples=50"))

    assert len(tiny.y_train) == 50 and len(set(tiny.y_train)) > 5  # a shuffled subset, not the first class
    np.testing.assert_array_equal(tiny.x_train, full.x_train[:50])
    assert len(tiny.y_val) == len(full.y_val) and len(tiny.y_test) == len(full.y_test)


def test_zero_validation_fraction_is_refused() -> None:
    message = error_message(data_settings("data.val_fraction=0"))
    assert "data.val_fraction=0.0" in message and "0 validation" in message


def test_loading_digits_does_not_import_tensorflow() -> None:
    script = (
        "import sys; from pipeline.compose import compose_config, validate; from pipeline.data import load_data;"
        "load_data(validate(compose_config([])).data); assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2])


def test_a_data_error_from_the_command_line_comes_before_tensorflow(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "bad.npz", {**labeled_arrays(), "y_train": np.full(40, 9.5)})
    # The CLI exits 2 through SystemExit; the wrapper then reports whether TensorFlow was ever imported.
    script = (
        "import runpy, sys\n"
        f"sys.argv = ['pipeline.run', 'data=npz', 'data.path={path}', 'tracking=none']\n"
        "try:\n    runpy.run_module('pipeline.run', run_name='__main__')\n"
        "finally:\n    print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: data.path={path}: y_train holds non-integer labels (e.g. 9.5); " \
                                    "allowed: integer class indices", result.stderr
    assert result.stdout.strip() == "tensorflow imported: False"


# --- data=npz ----------------------------------------------------------------------------------


def test_npz_uint8_images_are_scaled_and_validation_is_stratified(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", labeled_arrays())
    dataset = load_data(npz_settings(path))

    assert dataset.class_names == ("0", "1", "2", "3")  # the largest training label + 1
    assert (len(dataset.y_train), len(dataset.y_val), len(dataset.y_test)) == (36, 4, 12)
    assert sorted(dataset.y_val) == [0, 1, 2, 3]
    assert_images_match_labels(dataset, GRAY_OF_LABEL)


def test_unchanged_data_is_read_once_and_a_rewritten_file_again(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", labeled_arrays())
    first = load_data(npz_settings(path))
    assert load_data(npz_settings(path)) is first  # a sweep's trials share one read
    assert not first.x_train.flags.writeable and not first.y_test.flags.writeable  # no run can alter the next's

    arrays = labeled_arrays()
    arrays["x_test"] = arrays["x_test"][:6]
    arrays["y_test"] = arrays["y_test"][:6]
    write_npz(path, arrays)
    assert len(load_data(npz_settings(path)).y_test) == 6


def test_npz_float_rgb_images_and_num_classes_are_kept(tmp_path: Path) -> None:
    arrays = labeled_arrays()
    arrays["x_train"] = np.repeat(arrays["x_train"][..., None] / 255.0, 3, axis=-1)
    arrays["x_test"] = np.repeat(arrays["x_test"][..., None] / 255.0, 3, axis=-1)
    path = write_npz(tmp_path / "rgb.npz", arrays)
    dataset = load_data(npz_settings(path, "data.num_classes=6", "data.max_train_samples=8"))

    assert dataset.input_shape == (5, 5, 3) and dataset.num_classes == 6 and len(dataset.y_train) == 8
    assert_images_match_labels(dataset, np.repeat(GRAY_OF_LABEL, 3, axis=1))


def with_changes(**changes: np.ndarray | None) -> dict[str, np.ndarray]:
    arrays = labeled_arrays()
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    return arrays


BAD_ARRAYS = {
    "missing arrays": (with_changes(x_test=None, y_test=None), ["missing arrays x_test, y_test", "required: x_train"]),
    "length mismatch": (with_changes(y_train=np.zeros(39, np.uint8)), ["x_train has 40 images but y_train has 39"]),
    "fractional labels": (with_changes(y_train=np.full(40, 0.5)), ["y_train holds non-integer labels (e.g. 0.5)"]),
    "string labels": (with_changes(y_test=np.array(["cat"] * 12)), ["y_test holds non-integer labels (dtype <U3)"]),
    "one-hot labels": (with_changes(y_train=np.eye(4)[np.arange(40) % 4]), ["y_train has shape (40, 4)", "argmax"]),
    "negative label": (with_changes(y_train=np.r_[-1, np.arange(39) % 4]), ["y_train holds label -1", "0..3"]),
    "test label past the training ones": (
        with_changes(y_test=np.r_[9, np.arange(11) % 4]), ["y_test holds label 9", "allowed: 0..3", "data.num_classes"],
    ),
    "a single class": (with_changes(y_train=np.zeros(40, int), y_test=np.zeros(12, int)), ["num_classes=1"]),
    "flat images": (with_changes(x_train=np.zeros((40, 25), np.uint8)), ["x_train has shape (40, 25)", "(n, height"]),
    "channels first": (with_changes(x_test=np.zeros((12, 1, 5, 5), np.uint8)), ["x_test has shape (12, 1, 5, 5)"]),
    "float pixels above 1": (
        with_changes(x_train=np.full((40, 5, 5), 255.0)), ["x_train holds pixel values in [255.0, 255.0]", "[0, 1]"],
    ),
    "integer pixels above 255": (with_changes(x_test=np.full((12, 5, 5), 300, np.int16)), ["x_test holds", "0..255"]),
    "boolean pixels": (with_changes(x_train=np.zeros((40, 5, 5), bool)), ["x_train has dtype bool"]),
    "test images of another size": (with_changes(x_test=np.zeros((12, 6, 6), np.uint8)), ["x_test images are (6, 6"]),
    "no test images": (
        with_changes(x_test=np.zeros((0, 5, 5), np.uint8), y_test=np.zeros(0, np.uint8)), ["x_test holds no images"],
    ),
}


@pytest.mark.parametrize("arrays, expected", BAD_ARRAYS.values(), ids=BAD_ARRAYS.keys())
def test_npz_bad_arrays_are_named(tmp_path: Path, arrays: dict[str, np.ndarray], expected: list[str]) -> None:
    path = write_npz(tmp_path / "bad.npz", arrays)
    message = error_message(npz_settings(path))
    assert message.startswith(f"data.path={path}: ")
    for fragment in expected:
        assert fragment in message


def test_npz_num_classes_below_a_label_is_named(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", labeled_arrays())
    message = error_message(npz_settings(path, "data.num_classes=2"))
    assert "y_train holds label 2; allowed: 0..1 (num_classes=2)" in message


def test_npz_missing_file_is_named(tmp_path: Path) -> None:
    message = error_message(npz_settings(tmp_path / "absent.npz"))
    assert f"{tmp_path / 'absent.npz'}: no such file" in message and "x_train, y_train, x_test, y_test" in message


def test_npz_that_is_not_an_archive_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.npz").write_text("not numpy at all")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("notes.npz", "array.npy"):
        assert f"{tmp_path / name}: not a .npz archive" in error_message(npz_settings(tmp_path / name))


def test_npz_truncated_or_corrupted_archive_is_named(tmp_path: Path) -> None:
    raw = write_npz(tmp_path / "good.npz", labeled_arrays()).read_bytes()
    truncated, corrupted = tmp_path / "truncated.npz", tmp_path / "corrupted.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    corrupted.write_bytes(raw[:200] + bytes(100) + raw[300:])  # same size, zeros inside the first array's data

    assert "not a .npz archive" in error_message(npz_settings(truncated))
    assert f"{corrupted}: corrupt .npz archive" in error_message(npz_settings(corrupted))


# --- data=mnist and data=fashion_mnist from Keras's files ---------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def test_mnist_is_read_from_the_keras_cache(tmp_path: Path) -> None:
    arrays = labeled_arrays(n_train=50, n_test=20, classes=5)
    write_npz(tmp_path / "mnist.npz", arrays)
    dataset = load_data(data_settings("data=mnist", f"data.cache_dir={tmp_path}", "data.download=false"))

    assert dataset.source == "mnist" and dataset.class_names == tuple("0123456789")
    assert (len(dataset.y_train), len(dataset.y_val), len(dataset.y_test)) == (45, 5, 20)
    assert_images_match_labels(dataset, GRAY_OF_LABEL)


def test_fashion_mnist_is_read_from_keras_idx_files(tmp_path: Path) -> None:
    arrays = labeled_arrays(n_train=30, n_test=10, classes=3)
    (tmp_path / "fashion-mnist").mkdir()
    for file_name, key in zip(FASHION_FILES, ("y_train", "x_train", "y_test", "x_test")):
        write_idx(tmp_path / "fashion-mnist" / file_name, arrays[key])
    dataset = load_data(data_settings("data=fashion_mnist", f"data.cache_dir={tmp_path}", "data.download=false"))

    assert dataset.class_names == FASHION_NAMES and dataset.class_names[0] == "T-shirt/top"
    assert dataset.input_shape == (5, 5, 1) and len(dataset.y_test) == 10
    assert_images_match_labels(dataset, GRAY_OF_LABEL)


@pytest.mark.parametrize(
    "content, expected",
    [(b"plain bytes", "not a readable gzip file"), (gzip.compress(b"\x00\x00\x0d\x01"), "not an IDX file")],
    ids=["not gzip", "float IDX"],
)
def test_fashion_mnist_broken_file_is_named(tmp_path: Path, content: bytes, expected: str) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for file_name in FASHION_FILES:
        (folder / file_name).write_bytes(content)
    message = error_message(data_settings("data=fashion_mnist", f"data.cache_dir={tmp_path}", "data.download=false"))
    assert message.startswith(f"{folder / FASHION_FILES[0]}: {expected}")


@KERAS_SOURCES
def test_keras_files_offline_without_download(tmp_path: Path, source: str, folder: str, first_file: str) -> None:
    message = error_message(data_settings(f"data={source}", f"data.cache_dir={tmp_path}", "data.download=false"))
    assert f"{first_file}" in message and "data.download=false" in message
    assert f"in {tmp_path / folder}/" in message and "data=npz data.path=" in message


@KERAS_SOURCES
def test_keras_files_download_failure(tmp_path: Path, source: str, folder: str, first_file: str) -> None:
    settings = data_settings(f"data={source}", f"data.cache_dir={tmp_path}", f"data.origin={CLOSED_PORT_ORIGIN}")
    message = error_message(settings)
    assert f"could not download {CLOSED_PORT_ORIGIN}{first_file}" in message and "refused" in message
    assert f"in {tmp_path / folder}/" in message and "data=npz data.path=" in message
    assert not (tmp_path / folder / first_file).exists()


# --- data=images -------------------------------------------------------------------------------


def write_image(path: Path, size: tuple[int, int], color: int | tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L" if isinstance(color, int) else "RGB", size, color).save(path)


def write_class_folders(root: Path, colors: dict[str, int | tuple[int, int, int]], per_class: int = 6) -> None:
    """Images of varied sizes and formats, every image of a class filled with the class's color."""
    for name, color in colors.items():
        for index in range(per_class):
            suffix = (".png", ".bmp", ".gif")[index % 3]
            write_image(root / name / f"{index}{suffix}", (7 + index, 9), color)


def test_image_folders_become_sorted_classes_resized_and_converted(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"b_dog": 200, "a_cat": 40, "c_owl": 120})
    write_image(tmp_path / ".ipynb_checkpoints" / "0.png", (5, 5), 0)  # hidden folder: not a class
    (tmp_path / "a_cat" / "notes.txt").write_text("not an image: skipped")
    dataset = load_data(data_settings("data=images", f"data.path={tmp_path}", "data.image_size=[6,4]"))

    assert dataset.class_names == ("a_cat", "b_dog", "c_owl") and dataset.input_shape == (6, 4, 1)
    assert (len(dataset.y_train), len(dataset.y_val), len(dataset.y_test)) == (12, 2, 4)
    assert set(dataset.y_test) == {0, 1, 2}  # the test split is stratified
    assert_images_match_labels(dataset, np.array([[40], [200], [120]]) / 255)


def test_image_folders_in_rgb(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"red": (255, 0, 0), "blue": (0, 0, 255)}, per_class=5)
    dataset = load_data(data_settings("data=images", f"data.path={tmp_path}", "data.color_mode=rgb"))

    assert dataset.class_names == ("blue", "red") and dataset.input_shape == (28, 28, 3)
    assert_images_match_labels(dataset, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def folder_without_classes(root: Path) -> None:
    write_image(root / "loose.png", (5, 5), 0)


def single_class(root: Path) -> None:
    write_class_folders(root, {"only": 10}, per_class=2)


def class_without_images(root: Path) -> None:
    write_class_folders(root, {"cats": 10}, per_class=2)
    (root / "dogs").mkdir()
    (root / "dogs" / "readme.txt").write_text("no images here")


def unreadable_image(root: Path) -> None:
    write_class_folders(root, {"cats": 10, "dogs": 90}, per_class=2)
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG not really")


def truncated_image(root: Path) -> None:
    write_class_folders(root, {"cats": 10, "dogs": 90}, per_class=2)
    Image.effect_noise((64, 64), 50).save(root / "dogs" / "noise.png")
    raw = (root / "dogs" / "noise.png").read_bytes()
    (root / "dogs" / "noise.png").write_bytes(raw[: len(raw) // 2])


def too_few_images(root: Path) -> None:
    write_class_folders(root, {"cats": 10, "dogs": 90}, per_class=1)


BAD_FOLDERS = {
    "missing": (lambda root: None, "{root}/absent: no such folder", "absent"),
    "empty": (lambda root: None, "{root}: is empty", ""),
    "no class sub-folders": (folder_without_classes, "{root}: has no class sub-folders", ""),
    "one class": (single_class, "{root}: only one class folder ('only'); need at least 2", ""),
    "class without images": (class_without_images, "{root}: class folder 'dogs' holds no images", ""),
    "unreadable image": (unreadable_image, "{root}/dogs/broken.png: cannot read this image", ""),
    "truncated image": (truncated_image, "{root}/dogs/noise.png: cannot read this image", ""),
    "no training images left": (too_few_images, "data.val_fraction=0.1 leaves 1 validation and 0 training", ""),
}


@pytest.mark.parametrize("make, expected, subfolder", BAD_FOLDERS.values(), ids=BAD_FOLDERS.keys())
def test_image_folder_problems_are_named(
    tmp_path: Path, make: Callable[[Path], None], expected: str, subfolder: str
) -> None:
    make(tmp_path)
    path = tmp_path / subfolder if subfolder else tmp_path
    message = error_message(data_settings("data=images", f"data.path={path}"))
    assert expected.format(root=tmp_path) in message
