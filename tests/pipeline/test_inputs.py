"""The tf.data input pipeline: uint8 pixels scaled per batch, image folders streamed or cached (memory, disk),
mixed image modes, bad files found mid-training, augmentation from config; real folders of real image files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from pipeline import inputs
from pipeline.compose import validate
from pipeline.core import RunOptions, run_pipeline
from pipeline.data import load_data
from pipeline.data.cache import cache_file
from pipeline.errors import PipelineError, TrainingStopped
from tests.pipeline.data.conftest import data_settings

COLORS = {"blue": (20, 40, 230), "green": (30, 200, 60), "red": (230, 30, 30)}
PROJECT = Path(__file__).resolve().parents[2]


def photo_folder(root: Path, per_class: int = 12, size: int = 20) -> Path:
    """JPEG 'photos' (noisy, each class its own color) in class folders."""
    rng = np.random.default_rng(0)
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = np.clip(np.array(color) + rng.integers(-25, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.jpg", quality=95)
    return root


def folder_settings(root: Path, *overrides: str):
    return data_settings("data=images", f"data.path={root}", "data.color_mode=rgb", "data.image_size=[20,20]",
                         *overrides)


def fresh(settings):
    """The dataset as a new process would load it (nothing decoded yet in this one)."""
    inputs._last_pool = None
    return load_data(settings)


def test_array_sources_stay_uint8_and_reach_the_model_as_float32_in_0_1() -> None:
    data = load_data(data_settings("data.max_train_samples=100"))
    x, y = next(iter(inputs.training_batches(data, batch_size=32, seed=1)))

    assert data.train.pixels.dtype == np.uint8
    assert x.dtype == "float32" and x.shape == (32, 8, 8, 1) and float(np.max(x)) <= 1.0
    # Training batches are shuffled with the seed (the same seed repeats them) and reshuffled every epoch.
    again = next(iter(inputs.training_batches(data, batch_size=32, seed=1)))[1].numpy()
    other = next(iter(inputs.training_batches(data, batch_size=32, seed=2)))[1].numpy()
    batches = inputs.training_batches(data, batch_size=100, seed=1)
    first_epoch, second_epoch = (next(iter(batches))[1].numpy() for _ in range(2))
    assert np.array_equal(again, y.numpy()) and not np.array_equal(other, y.numpy())
    assert sorted(first_epoch) == sorted(data.train.labels) and not np.array_equal(first_epoch, second_epoch)
    # Evaluation batches keep the split's order.
    np.testing.assert_array_equal(np.concatenate([y for _, y in inputs.evaluation_batches(data, "test", 64)]),
                                  data.test.labels)
    np.testing.assert_allclose(inputs.split_images(data, "test", 5),
                               data.test.pixels[data.test.rows[:5]] / 16.0, rtol=1e-6)


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_every_cache_hands_the_model_the_same_decoded_images(tmp_path: Path, cache: str) -> None:
    root = photo_folder(tmp_path / "photos")
    reference = inputs.split_images(fresh(folder_settings(root, "data.cache=none")), "train")
    data = fresh(folder_settings(root, f"data.cache={cache}", f"data.cache_dir={tmp_path / 'cache'}"))
    images = inputs.split_images(data, "train")

    assert images.shape == (len(data.train), 20, 20, 3) and data.image_files.cache == cache
    np.testing.assert_array_equal(images, reference)
    means = images.reshape(len(images), -1, 3).mean(axis=1) * 255
    for label, mean in zip(data.train.labels, means):
        np.testing.assert_allclose(mean, list(COLORS.values())[label], atol=8)  # each image its class's color
    assert (tmp_path / "cache").exists() == (cache == "disk")


def test_grayscale_rgba_and_palette_images_in_an_rgb_folder_decode_as_rgb(tmp_path: Path) -> None:
    for name, color in (("gray", (90, 90, 90)), ("red", (200, 0, 0))):
        (tmp_path / name).mkdir()
        Image.new("RGB", (9, 7), color).save(tmp_path / name / "rgb.png")
        Image.new("RGBA", (9, 7), (*color, 128)).save(tmp_path / name / "rgba.png")
        palette = Image.new("RGB", (9, 7), color).convert("P", palette=Image.Palette.ADAPTIVE)
        palette.save(tmp_path / name / "palette.png")
        Image.new("RGB", (9, 7), color).save(tmp_path / name / "rgb.bmp")
    Image.new("L", (9, 7), 90).save(tmp_path / "gray" / "gray.jpg", quality=100)
    Image.new("L", (9, 7), 90).save(tmp_path / "gray" / "gray.bmp")
    data = fresh(folder_settings(tmp_path, "data.test_fraction=0.2", "data.val_fraction=0.2", "data.cache=none"))

    for split in data.splits():
        images = inputs.split_images(data, split)
        expected = np.array([(90, 90, 90), (200, 0, 0)])[data.splits()[split].labels] / 255
        np.testing.assert_allclose(images.mean(axis=(1, 2)), expected, atol=2 / 255)


def test_a_second_process_reads_the_disk_cache_without_decoding(tmp_path: Path, capsys) -> None:
    root = photo_folder(tmp_path / "photos")
    settings = folder_settings(root, "data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}")
    inputs.split_images(fresh(settings), "train")
    assert "decoding 36 images into" in capsys.readouterr().out
    written = cache_file(load_data(settings).image_files).stat().st_mtime_ns

    images = inputs.split_images(fresh(settings), "validation")

    assert "decoding" not in capsys.readouterr().out
    assert cache_file(load_data(settings).image_files).stat().st_mtime_ns == written
    assert images.shape[1:] == (20, 20, 3)


def test_two_processes_writing_one_disk_cache_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "photos", per_class=40)
    overrides = [f"data.path={root}", "data.color_mode=rgb", "data.image_size=[20,20]", "data.cache=disk",
                 f"data.cache_dir={tmp_path / 'cache'}"]
    script = ("import sys; from pipeline.compose import compose_config, validate; from pipeline.data import load_data;"
              "from pipeline import inputs; data = load_data(validate(compose_config(sys.argv[1:])).data);"
              "print(inputs.split_images(data, 'train').sum())")
    writers = [subprocess.Popen([sys.executable, "-c", script, "data=images", *overrides], cwd=PROJECT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [writer.communicate(timeout=300) for writer in writers]

    assert [writer.returncode for writer in writers] == [0, 0], outputs
    assert outputs[0][0].splitlines()[-1] == outputs[1][0].splitlines()[-1]  # the same images for both
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == sorted(
        [cache_file(load_data(data_settings("data=images", *overrides)).image_files).name,
         cache_file(load_data(data_settings("data=images", *overrides)).image_files).with_suffix(".failed.json").name])
    reference = inputs.split_images(fresh(data_settings("data=images", *overrides[:-2], "data.cache=none")), "train")
    np.testing.assert_array_equal(inputs.split_images(fresh(data_settings("data=images", *overrides)), "train"),
                                  reference)


class CorruptAfterFirstEpoch(keras.callbacks.Callback):
    """A file that goes bad mid-run (a network drive, a sync client): valid header and end, broken inside."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raw = bytearray(self.path.read_bytes())
            raw[200:-20] = bytes(len(raw) - 220)
            self.path.write_bytes(bytes(raw))


def corruptible_folder(root: Path) -> Path:
    photo_folder(root)
    noise = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(root / "red" / "noise.png")  # large enough to break in the middle
    return root


def test_an_image_that_fails_to_decode_mid_training_fails_the_run_naming_it(compose, mlflow_store, tmp_path):
    root = corruptible_folder(tmp_path / "photos")
    overrides = [f"data.path={root}", "data=images", "data.color_mode=rgb", "data.image_size=[20,20]",
                 "data.cache=none", "model=small_cnn", "trainer.epochs=3", "trainer.batch_size=8",
                 mlflow_store.override, f"output_dir={tmp_path / 'out'}"]
    with pytest.raises(PipelineError, match=rf"^{root}/red/noise.png: TensorFlow cannot decode this image"):
        run_pipeline(validate(compose(*overrides)),
                     RunOptions(callbacks=[CorruptAfterFirstEpoch(root / "red" / "noise.png")]))

    (run,) = mlflow_store.runs()
    assert run.info.status == "FAILED" and "noise.png" in run.data.tags["error"]
    saved = {item.path for item in mlflow_store.client().list_artifacts(run.info.run_id, "checkpoints")}
    assert "checkpoints/last.keras" in saved  # epoch 1's checkpoint, for resume


@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_with_skip_bad_images_a_file_failing_mid_training_is_skipped(compose, tmp_path, trainer):
    root = corruptible_folder(tmp_path / "photos")
    settings = validate(compose(f"data.path={root}", "data=images", "data.color_mode=rgb", "data.image_size=[20,20]",
                                "data.cache=none", "data.skip_bad_images=true", "model=small_cnn", "trainer.epochs=2",
                                f"trainer={trainer}", "trainer.batch_size=8", "tracking=none",
                                f"output_dir={tmp_path / 'out'}"))
    result = run_pipeline(settings, RunOptions(callbacks=[CorruptAfterFirstEpoch(root / "red" / "noise.png")]))
    assert len(result.history["loss"]) == 2 and all(np.isfinite(result.history["val_loss"]))


@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_a_streamed_folder_trains_with_either_trainer_and_resumes(compose, mlflow_store, tmp_path, trainer):
    from tests.pipeline.test_core import StopAfterFirstEpoch

    root = photo_folder(tmp_path / "photos", per_class=20)
    overrides = [f"data.path={root}", "data=images", "data.color_mode=rgb", "data.image_size=[20,20]",
                 "data.cache=none", "model=small_cnn", f"trainer={trainer}", "trainer.epochs=3",
                 "trainer.batch_size=8", "optimizer.learning_rate=0.01", mlflow_store.override,
                 "data.augment=[{RandomFlip: {mode: horizontal}}]"]
    with pytest.raises(TrainingStopped):
        run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'a'}")),
                     RunOptions(callbacks=[StopAfterFirstEpoch()]))
    (killed,) = mlflow_store.runs()
    resumed = run_pipeline(validate(compose(*overrides, f"resume={killed.info.run_id}",
                                            f"output_dir={tmp_path / 'b'}")))

    assert len(resumed.history["loss"]) == 3 and resumed.test_metrics["test_accuracy"] >= 0.8
    run = mlflow_store.client().get_run(resumed.run_id)
    assert run.info.status == "FINISHED"
    assert {dataset.dataset.name for dataset in run.inputs.dataset_inputs} == {
        "images-train", "images-validation", "images-test"}
    artifacts = {item.path for item in mlflow_store.client().list_artifacts(resumed.run_id, "plots")}
    assert "plots/training_examples.png" in artifacts


AUGMENT_ERRORS = {
    "unknown layer": ("[{RandomFlipp: {mode: horizontal}}]", "data.augment[0]=RandomFlipp: not a Keras preprocessing "
                                                              "layer; did you mean RandomFlip"),
    "bad argument": ("[{RandomRotation: {factr: 0.1}}]",
                     "data.augment[0] (RandomRotation): bad arguments {'factr': 0.1}"),
    "not preprocessing": ("[{Dense: {units: 3}}]", "data.augment[0]=Dense: not a preprocessing layer; allowed: "),
    "changes the shape": ("[{RandomCrop: {height: 4, width: 4}}]",
                          "data.augment turns (8, 8, 1) images into (4, 4, 1)"),
    "two layers in one entry": ("[{RandomFlip: {}, RandomZoom: {height_factor: 0.1}}]", "each entry names one layer"),
}


@pytest.mark.parametrize("augment, message", AUGMENT_ERRORS.values(), ids=AUGMENT_ERRORS.keys())
def test_augmentation_that_cannot_work_is_one_line_before_any_run_is_recorded(compose, mlflow_store, tmp_path,
                                                                              augment, message):
    with pytest.raises((PipelineError, ValueError)) as caught:
        run_pipeline(validate(compose(f"data.augment={augment}", mlflow_store.override,
                                      f"output_dir={tmp_path}")))
    assert message in str(caught.value) and "\n" not in str(caught.value).strip()
    assert mlflow_store.runs() == []


def test_augmentation_is_seeded_and_touches_only_training_batches() -> None:
    data = load_data(data_settings("data.max_train_samples=64"))
    settings = data_settings("data.augment=[{RandomRotation: {factor: 0.2}}]")

    def first_batch(seed: int) -> np.ndarray:
        augment = inputs.augmentation(settings, (8, 8, 1), seed)
        return next(iter(inputs.training_batches(data, 64, seed=0, augment=augment)))[0].numpy()

    plain = next(iter(inputs.training_batches(data, 64, seed=0)))[0].numpy()
    assert not np.allclose(first_batch(1), plain) and np.allclose(first_batch(1), first_batch(1))
    assert not np.allclose(first_batch(1), first_batch(2))
    validation = np.concatenate([x for x, _ in inputs.evaluation_batches(data, "validation", 64)])
    np.testing.assert_allclose(validation, inputs.split_images(data, "validation"))


@pytest.mark.parametrize("trainer", ["fit", "custom"])
@pytest.mark.parametrize("augment", ["[]", "[{RandomRotation: {factor: 0.2}},{RandomZoom: {height_factor: 0.2}}]"])
def test_a_resumed_run_sees_the_batches_dropout_and_augmentation_of_the_uninterrupted_run(
        compose, mlflow_store, tmp_path, trainer, augment):
    from tests.pipeline.test_core import StopAfterFirstEpoch

    overrides = ["deterministic=true", f"trainer={trainer}", "trainer.epochs=3", mlflow_store.override,
                 f"data.augment={augment}", "model.dropout=0.3"]
    uninterrupted = run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'whole'}")))
    with pytest.raises(TrainingStopped):
        run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'a'}")),
                     RunOptions(callbacks=[StopAfterFirstEpoch()]))
    killed = next(run for run in mlflow_store.runs() if run.info.status == "KILLED")
    resumed = run_pipeline(validate(compose(*overrides, f"resume={killed.info.run_id}",
                                            f"output_dir={tmp_path / 'b'}")))

    assert resumed.history["loss"] == uninterrupted.history["loss"]
    assert resumed.history["val_accuracy"] == uninterrupted.history["val_accuracy"]
