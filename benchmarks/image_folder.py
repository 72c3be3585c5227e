"""`data=images` against Keras's own image-folder example, each side in a child process: memory, start-up, speed.

    PYTHONPATH=. python benchmarks/image_folder.py [--images 23000] [--size 180] [--epochs 1] [--rounds 1]
        [--variants bare,none,tracking,auto,fixed-steps,disk,disk-again] [--folder-cache /tmp/kerastrack-bench-images]
        [--json F] [--reads]

The folder (built once, then reused): --images JPEGs in class folders 0/..9/, the digits of
../shared/data/mnist-train-22k.npz upscaled to --size and tinted (a seeded foreground and background colour per image).
Per child, bare Keras (`image_dataset_from_directory`, small_cnn written out, `model.fit`) or the pipeline's CLI
(`data=images model=small_cnn` and the variant's overrides): peak memory (the RSS of the child and its descendants,
sampled every 0.1 s); wall time from just before its start to its first training step; training samples/s over the
first --epochs epochs (first batch begin to last batch end, the first trace included; per training image, as the
pipeline trains on 72% of the folder and bare Keras on 80%); accuracy (bare: the final val_accuracy; pipeline:
test_accuracy in metrics.json). disk and disk-again share a cache folder (the first decodes into it before its
first step, the second reads what the first wrote). Rounds alternate bare Keras first and last; medians over rounds.
Targets: peak memory with data.cache=none <= 1.3x bare; first step <= bare + 3 s with tracking=none, + 5 s with
tracking on; samples/s >= 0.95x bare. `--reads` also times the input pipeline alone (no model), one pass over the
training images each: decoded as they stream (data.cache=none), written into a disk cache, read back from it (in a new
pipeline, as a second trial or a resumed run would); target: the cached pass >= 2x the streamed one.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# The parent's other imports (psutil, numpy, Pillow, MLflow) are in its functions: a child starts with the standard
# library only and imports Keras when its side would (bare Keras first thing, the pipeline once its data is checked).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DIGITS = PROJECT_ROOT.parent / "shared" / "data" / "mnist-train-22k.npz"
BATCH_SIZE = 64
COMPLETE = ".complete"  # written last: a folder without it was interrupted and is rebuilt
STORE = "tracking.uri=sqlite:///{scratch}/mlflow.db"  # artifacts go to artifacts/ beside it


@dataclass(frozen=True)
class Variant:
    side: str  # bare | pipeline
    overrides: tuple[str, ...] = ()  # {scratch} (the run's temp folder) and {cache} (the round's) are filled in


DISK = ("tracking=none", "data.cache=disk", "data.cache_dir={cache}")
VARIANTS = {
    "bare": Variant("bare"),
    "none": Variant("pipeline", ("tracking=none", "data.cache=none")),
    "tracking": Variant("pipeline", ("tracking=local", STORE, "data.cache=none")),
    "auto": Variant("pipeline", ("tracking=none", "data.cache=auto")),
    # steps_per_execution=auto probes the step time (a trace and a few steps) before the first step; a number skips it
    "fixed-steps": Variant("pipeline", ("tracking=none", "data.cache=none", "trainer.steps_per_execution=4")),
    "disk": Variant("pipeline", DISK),  # decodes into the cache before its first step
    "disk-again": Variant("pipeline", DISK),  # reads what disk wrote
}


@dataclass
class Result:
    peak_mib: float
    first_step_s: float
    epoch_s: list[float]
    samples_per_s: float
    accuracy: float

    def __str__(self) -> str:
        return (f"{self.peak_mib:,.0f} MiB, first step {self.first_step_s:.1f} s, {self.samples_per_s:,.0f} samples/s, "
                f"epochs {', '.join(f'{s:.1f}' for s in self.epoch_s)} s, accuracy {self.accuracy:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=23000)
    parser.add_argument("--size", type=int, default=180)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"a comma list of: {', '.join(VARIANTS)}")
    parser.add_argument("--folder-cache", type=Path, default=Path("/tmp/kerastrack-bench-images"))
    parser.add_argument("--json", type=Path, help="also save the results here")
    parser.add_argument("--reads", action="store_true", help="also time the input pipeline alone: streamed vs cached")
    for hidden in ("--child", "--events", "--folder"):  # a child's: its side, where its events go, the images
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.child:
        return child(args, overrides)
    names = args.variants.split(",")
    if overrides or not set(names) <= set(VARIANTS):
        parser.error(f"unrecognized: {' '.join(overrides) or args.variants} (variants: {', '.join(VARIANTS)})")

    folder = image_folder(args.folder_cache, args.images, args.size)
    for path in folder.rglob("*.jpg"):  # into the page cache, so that the first child reads no colder files
        path.read_bytes()
    results: dict[str, list[Result | None]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names if round_ % 2 == 0 else sorted(names, key=lambda name: name == "bare")  # bare Keras last
        with tempfile.TemporaryDirectory() as round_dir:
            for name in order:
                results[name].append(measure(name, folder, args, Path(round_dir)))
                print(f"round {round_ + 1} {name:<10} {results[name][-1] or 'FAILED'}", flush=True)
    report(results, args)
    if args.reads:
        report_reads(folder, args)


def image_folder(cache: Path, images: int, size: int) -> Path:
    folder = cache / f"{images}-{size}px"
    if (folder / COMPLETE).exists():
        print(f"reusing {folder}")
        return folder
    import multiprocessing

    shutil.rmtree(folder, ignore_errors=True)
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
    started = time.perf_counter()
    chunks = [(folder, size, start, min(start + 1000, images)) for start in range(0, images, 1000)]
    with multiprocessing.Pool(2) as pool:
        pool.starmap(write_images, chunks)
    (folder / COMPLETE).touch()
    print(f"built {folder}: {images} JPEGs in {time.perf_counter() - started:.1f} s")
    return folder


def write_images(folder: Path, size: int, start: int, stop: int) -> None:
    import numpy as np
    from PIL import Image

    with np.load(DIGITS) as digits:
        x, y = digits["x_train"], digits["y_train"]
    for index in range(start, stop):
        rng = np.random.default_rng(index)  # seeded per image: a digit used again (index past len(x)) gets other tints
        dark, light = rng.integers(0, 110, 3), rng.integers(146, 256, 3)  # some contrast, whichever way round
        background, foreground = (dark, light) if rng.random() < 0.5 else (light, dark)
        ink = np.asarray(Image.fromarray(x[index % len(x)]).resize((size, size), Image.BILINEAR))[..., None] / 255.0
        pixels = (background + (foreground - background) * ink).astype(np.uint8)
        Image.fromarray(pixels).save(folder / str(y[index % len(x)]) / f"{index:05d}.jpg", quality=90)


def measure(name: str, folder: Path, args: argparse.Namespace, round_dir: Path) -> Result | None:
    import psutil

    variant, scratch, cache = VARIANTS[name], Path(tempfile.mkdtemp(dir=round_dir)), round_dir / "disk-cache"
    cache.mkdir(exist_ok=True)
    epochs = args.epochs
    overrides = [override.format(scratch=scratch, cache=cache) for override in variant.overrides]
    if variant.side == "pipeline":
        overrides = ["data=images", f"data.path={folder}", f"data.image_size=[{args.size},{args.size}]",
                     "data.color_mode=rgb", "model=small_cnn", f"trainer.epochs={epochs}",
                     f"trainer.batch_size={BATCH_SIZE}", "trainer.verbose=2", "optimizer=adam",
                     f"hydra.run.dir={scratch}/run", *overrides]
    if STORE in variant.overrides:
        from mlflow import MlflowClient

        MlflowClient(f"sqlite:///{scratch}/mlflow.db").search_experiments()  # a new store's migrations: not per run
    events, log = scratch / "events.json", scratch / "child.log"
    command = [sys.executable, __file__, "--child", variant.side, "--events", str(events), "--folder", str(folder),
               f"--size={args.size}", f"--epochs={epochs}", *overrides]
    paths = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    peak = 0
    with log.open("w") as output:
        started = time.time()
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT)
        tree = psutil.Process(process.pid)
        while process.poll() is None:
            peak = max(peak, tree_rss(tree))
            time.sleep(0.1)
    record = json.loads(events.read_text()) if events.exists() else {}
    metrics = scratch / "run" / "metrics.json"
    accuracy = json.loads(metrics.read_text())["test_accuracy"] if metrics.exists() else record.get("accuracy")
    if process.returncode != 0 or len(record.get("epochs", [])) != epochs or accuracy is None:
        print(f"{name} failed (exit status {process.returncode}); its last 20 lines of output:")
        print("".join(log.read_text().splitlines(keepends=True)[-20:]))
        return None
    epoch_s = [end - begin for begin, end in record["epochs"]]
    samples_per_s = train_images(variant.side, args.images) * args.epochs / sum(epoch_s[:args.epochs])
    return Result(peak / 2**20, record["epochs"][0][0] - started, epoch_s, samples_per_s, accuracy)


def tree_rss(process) -> int:
    import psutil

    total = 0
    with contextlib.suppress(psutil.NoSuchProcess):  # a process that exits meanwhile counts 0
        for member in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += member.memory_info().rss
    return total


def train_images(side: str, images: int) -> int:
    if side == "bare":
        return images - int(0.2 * images)  # image_dataset_from_directory: validation gets int(split * n)
    from omegaconf import OmegaConf

    data = OmegaConf.load(PROJECT_ROOT / "conf" / "data" / "images.yaml")
    kept = images - math.ceil(data.test_fraction * images)  # pipeline.data.splits.hold_out rounds the held part up
    return kept - math.ceil(data.val_fraction * kept)


def record_batches(record: dict):
    """Keras, its callback lists recording the time of each epoch's first batch begin and of its last batch end."""
    import keras

    callbacks = keras.callbacks.CallbackList
    batch_begin, batch_end = callbacks.on_train_batch_begin, callbacks.on_train_batch_end

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:  # both trainers count an epoch's steps from 0
            record["epochs"].append([time.time(), None])
        batch_begin(self, batch, logs)

    def on_train_batch_end(self, batch, logs=None):  # stands for steps_per_execution steps: samples are counted
        batch_end(self, batch, logs)
        record["epochs"][-1][1] = time.time()

    callbacks.on_train_batch_begin, callbacks.on_train_batch_end = on_train_batch_begin, on_train_batch_end
    return keras


def child(args: argparse.Namespace, overrides: list[str]) -> None:
    """One side's run, recording the time of each epoch's first batch begin and of its last batch end."""
    record: dict = {"epochs": []}
    atexit.register(lambda: Path(args.events).write_text(json.dumps(record)))
    if args.child == "reads":
        record["reads"] = reads(args, overrides)
        return None
    if args.child == "pipeline":
        # Keras is hooked when the pipeline imports it (its jobs, once the data is checked), not before: a process
        # without TensorFlow scans an image folder in parallel, as the command line does.
        import pipeline.jobs

        run_job = pipeline.jobs.run_job

        def hooked_run_job(cfg):
            record_batches(record)
            return run_job(cfg)

        pipeline.jobs.run_job = hooked_run_job
        sys.argv = ["pipeline.run", *overrides]
        from pipeline.run import main as pipeline_main

        return pipeline_main()
    keras = record_batches(record)
    import tensorflow as tf
    from keras import layers

    size = (args.size, args.size)
    train, val = keras.utils.image_dataset_from_directory(args.folder, validation_split=0.2, subset="both", seed=1337,
                                                          image_size=size, batch_size=BATCH_SIZE)
    model = keras.Sequential([
        keras.Input((*size, 3)), layers.Rescaling(1.0 / 255), layers.Conv2D(16, 3, activation="relu"),
        *(layers.Conv2D(16, 3, strides=2, activation="relu") for _ in range(3)),
        layers.Flatten(), layers.Dense(20, activation="relu"), layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # verbose=2 as the pipeline's trainer.verbose=2: a progress bar into a log file is not what is compared
    history = model.fit(train.prefetch(tf.data.AUTOTUNE), validation_data=val.prefetch(tf.data.AUTOTUNE),
                        epochs=args.epochs, verbose=2)
    record["accuracy"] = history.history["val_accuracy"][-1]


def report_reads(folder: Path, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        events = Path(scratch) / "reads.json"
        subprocess.run([sys.executable, __file__, "--child", "reads", "--events", str(events), "--folder", str(folder),
                        f"--size={args.size}", f"data.cache_dir={scratch}/cache"], cwd=PROJECT_ROOT, check=True,
                       env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
        reads = json.loads(events.read_text())["reads"]
    streamed, cached = reads["streamed"], reads["cached"]
    print(f"\nInput pipeline alone, training images per second: streamed {streamed:,.0f}; disk cache written at "
          f"{reads['written']:,.0f}; read back from it {cached:,.0f} ({cached / streamed:.1f}x streamed)")
    print(f"{'PASS' if cached >= 2 * streamed else 'FAIL'}  disk cache read >= 2x streamed "
          f"(measured {cached / streamed:.2f})")


def reads(args: argparse.Namespace, overrides: list[str]) -> dict[str, float]:
    """Images per second of one pass over the training batches: streamed, decoded into a disk cache, read back."""
    from pipeline import inputs
    from pipeline.compose import compose_config, validate
    from pipeline.data import load_data

    base = ["data=images", f"data.path={args.folder}", f"data.image_size=[{args.size},{args.size}]",
            "data.color_mode=rgb", *overrides]

    def one_pass(cache: str) -> float:
        inputs._last_pool = None  # as a new process finds it: nothing decoded in memory
        data = load_data(validate(compose_config([*base, f"data.cache={cache}"])).data)
        started = time.perf_counter()
        count = sum(len(labels) for _, labels in inputs.training_batches(data, BATCH_SIZE, seed=0))
        return count / (time.perf_counter() - started)

    return {"streamed": one_pass("none"), "written": one_pass("disk"), "cached": one_pass("disk")}


def report(results: dict[str, list[Result | None]], args: argparse.Namespace) -> None:
    rows = {name: median(runs) if all(runs) else None for name, runs in results.items()}
    bare = rows.get("bare")
    print(f"\n{args.images} images of {args.size}x{args.size}, {args.epochs} epoch(s), median of {args.rounds} "
          "round(s); in brackets, against bare Keras in the same run:\n")
    print("| variant | peak memory | first step | training samples/s | accuracy (bare: validation, pipeline: test) |")
    print("|---|---|---|---|---|")
    checks: list[tuple[str, float | None, bool]] = [] if bare else [("bare Keras: no target checked", None, False)]
    for name, row in rows.items():
        overrides = VARIANTS[name].overrides
        label = " ".join([name, *(f"`{override}`" for override in overrides if "{" not in override)])  # no temp folders
        if row is None:
            print(f"| {label} | failed | failed | failed | failed |")
            checks.append((f"{name} failed", None, False))
            continue
        base = bare or row
        memory, first_step = row.peak_mib / base.peak_mib, row.first_step_s - base.first_step_s
        speed = row.samples_per_s / base.samples_per_s
        versus = bare is not None and name != "bare"
        print(f"| {label} | {row.peak_mib:,.0f} MiB{f' ({memory:.2f}x)' * versus} | {row.first_step_s:.1f} s"
              f"{f' ({first_step:+.1f} s)' * versus} | {row.samples_per_s:,.0f}{f' ({speed:.2f}x)' * versus} | "
              f"{row.accuracy:.3f} |")
        if versus:
            allowed = 3 if "tracking=none" in overrides else 5
            if "data.cache=none" in overrides:
                checks.append((f"{name}: peak memory <= 1.3x bare", memory, memory <= 1.3))
            checks += [(f"{name}: first step <= bare + {allowed} s", first_step, first_step <= allowed),
                       (f"{name}: samples/s >= 0.95x bare", speed, speed >= 0.95)]
    print()
    for label, measured, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {label}" + ("" if measured is None else f" (measured {measured:.2f})"))
    if args.json:
        settings = {key: getattr(args, key) for key in ("images", "size", "epochs", "rounds")}
        runs = {name: [result and asdict(result) for result in runs] for name, runs in results.items()}
        args.json.write_text(json.dumps({**settings, "runs": runs}, indent=2))


def median(runs: list[Result]) -> Result:
    return Result(statistics.median(r.peak_mib for r in runs), statistics.median(r.first_step_s for r in runs),
                  [statistics.median(times) for times in zip(*(r.epoch_s for r in runs))],
                  statistics.median(r.samples_per_s for r in runs), statistics.median(r.accuracy for r in runs))


if __name__ == "__main__":
    main()
