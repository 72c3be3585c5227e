"""data=images: class folders of real image files the tests write, and every folder problem's message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import load_data
from tests.pipeline.data.conftest import (
    assert_images_match_labels,
    data_settings,
    error_message,
    run_cli_noting_tensorflow,
)


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
    assert (len(dataset.train), len(dataset.validation), len(dataset.test)) == (12, 2, 4)
    assert dataset.image_files.cache == "memory"  # auto: a small folder fits the memory budget
    assert set(dataset.test.labels) == {0, 1, 2}  # the test split is stratified
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
    "unreadable image": (unreadable_image, "{root}/dogs/broken.png: not an image (UnidentifiedImageError", ""),
    "truncated image": (truncated_image, "{root}/dogs/noise.png: truncated (no PNG end marker)", ""),
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


def test_files_that_are_not_images_stop_the_run_naming_the_first_and_counting_them(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cats": 10, "dogs": 90}, per_class=3)
    (tmp_path / "cats" / "a_notes.jpg").write_text("a text file named .jpg")
    truncated_image(tmp_path)
    message = error_message(data_settings("data=images", f"data.path={tmp_path}"))

    assert message.startswith(f"{tmp_path}/cats/a_notes.jpg: not an image")
    assert "2 of 8 files are not readable images" in message and "data.skip_bad_images=true" in message


def test_skip_bad_images_leaves_them_out_and_lists_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_class_folders(tmp_path, {"cats": 10, "dogs": 90}, per_class=6)
    (tmp_path / "cats" / "a_notes.jpg").write_text("a text file named .jpg")
    truncated_image(tmp_path)
    dataset = load_data(data_settings("data=images", f"data.path={tmp_path}", "data.skip_bad_images=true"))

    assert sum(map(len, dataset.splits().values())) == 12
    skipped = {str(tmp_path / "cats" / "a_notes.jpg"), str(tmp_path / "dogs" / "noise.png")}
    assert set(dataset.image_files.skipped) == skipped
    assert "left out 2 of 14 files that are not readable images" in capsys.readouterr().out


def test_a_jpeg_cut_short_is_found_by_the_scan_without_decoding(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cats": 10, "dogs": 90}, per_class=2)
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "dogs" / "photo.jpg", quality=90)
    raw = (tmp_path / "dogs" / "photo.jpg").read_bytes()
    (tmp_path / "dogs" / "photo.jpg").write_bytes(raw[: len(raw) * 2 // 3])

    assert f"{tmp_path}/dogs/photo.jpg: truncated (no JPEG end marker); fix or remove it" in error_message(
        data_settings("data=images", f"data.path={tmp_path}"))


def test_hidden_folders_inside_a_class_are_not_read(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cats": 10, "dogs": 90}, per_class=3)
    (tmp_path / "dogs" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "dogs" / ".ipynb_checkpoints" / "0.png").write_text("not an image, and hidden")
    dataset = load_data(data_settings("data=images", f"data.path={tmp_path}"))
    assert sum(map(len, dataset.splits().values())) == 6


def test_auto_cache_streams_a_folder_too_large_for_the_memory_budget(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cats": 10, "dogs": 90}, per_class=3)
    # 6 images of 512x512 RGB decode to 4.5 MiB: over a 4 MiB budget.
    settings = data_settings("data=images", f"data.path={tmp_path}", "data.image_size=[512,512]",
                             "data.color_mode=rgb", "data.memory_budget_mb=4")
    assert load_data(settings).image_files.cache == "none"
    assert load_data(data_settings("data=images", f"data.path={tmp_path}")).image_files.cache == "memory"


def test_a_bad_file_stops_the_command_line_before_tensorflow_with_exit_2(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cats": 10, "dogs": 90}, per_class=3)
    (tmp_path / "dogs" / "page.jpg").write_text("<html>404</html>")
    result = run_cli_noting_tensorflow("data=images", f"data.path={tmp_path}", "tracking=none")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path}/dogs/page.jpg: not an image (UnidentifiedImageError")
    assert line.endswith("or set data.skip_bad_images=true to leave such files out")
    assert result.stdout.strip() == "tensorflow imported: False"
