"""Transfer learning with weights made here (ImageNet's cannot be downloaded on our machines): issue 21's proof.

    PYTHONPATH=. python benchmarks/transfer.py [--seeds 1 2 3] [--size 32] [--pretrain-images 2000]
        [--pretrain-epochs 2] [--pretrain-batch 16] [--head-epochs 4] [--fine-tune-epochs 3] [--fine-tune-rate 1e-4]
        [--per-class 50]

1. A backbone (`model.backbone`, default MobileNetV3Small, `model.weights=null`, unfrozen) is trained by
   `run_pipeline` on digits 0-4 of ../shared/data/mnist-train-22k.npz, upscaled to --size (bilinear; grayscale, which
   the pipeline repeats to 3 channels), and its weights are saved (`backbone.save_weights`).
2. On digits 5-9 (relabelled 0-4), --per-class training images per class (the pipeline holds out a tenth of them for
   validation) and the 2,000 test digits' 5-9, three variants, each with the same epochs (head + fine-tune) and seed:
   from scratch (`weights=null`, unfrozen); the frozen backbone with the saved weights and a new head; the same,
   then `trainer.fine_tune` (the backbone unfrozen, a fresh Adam at --fine-tune-rate). Each is tested with the
   weights it ends with.
Printed: each run's test accuracy and training time (the sum of its epoch times, both phases), then per variant the
mean over the seeds, and the issue's target (fine-tuned >= from scratch + 5 points).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.core import run_pipeline
from pipeline.memory import release_memory
from pipeline.model import backbone_of

DATA = PROJECT_ROOT.parent / "shared" / "data" / "mnist-train-22k.npz"
TARGET_POINTS = 5.0


def upscaled(images: np.ndarray, size: int) -> np.ndarray:
    resized = tf.image.resize(images[..., None], (size, size)).numpy()
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def digits_npz(path: Path, source: dict[str, np.ndarray], digits: range, size: int, train_count: int | None,
               per_class: int | None, seed: int) -> Path:
    """The training digits of `digits` (the first `train_count`, or `per_class` of each, drawn with `seed`) and the
    test digits of `digits`, relabelled from 0, in Keras's mnist.npz layout."""
    rng = np.random.default_rng(seed)
    chosen = np.flatnonzero(np.isin(source["y_train"], digits))
    if per_class is not None:
        chosen = np.concatenate([rng.choice(chosen[source["y_train"][chosen] == digit], per_class, replace=False)
                                 for digit in digits])
    chosen = rng.permutation(chosen)[:train_count]
    test = np.flatnonzero(np.isin(source["y_test"], digits))
    np.savez(path, x_train=upscaled(source["x_train"][chosen], size), y_train=source["y_train"][chosen] - digits[0],
             x_test=upscaled(source["x_test"][test], size), y_test=source["y_test"][test] - digits[0])
    return path


def run(overrides: list[str]):
    release_memory()
    return run_pipeline(validate(compose_config(["tracking=none", "trainer.verbose=0", *overrides])))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--backbone", default="MobileNetV3Small")
    parser.add_argument("--size", type=int, default=32, help="image height and width (the backbone's minimum: 32)")
    parser.add_argument("--pretrain-images", type=int, default=2000)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--pretrain-batch", type=int, default=16, help="small batches: more steps for BatchNorm's "
                        "moving statistics, which the frozen backbone uses (MobileNetV3's momentum is 0.999)")
    parser.add_argument("--head-epochs", type=int, default=4)
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    parser.add_argument("--fine-tune-rate", type=float, default=1e-4)
    parser.add_argument("--per-class", type=int, default=50)
    args = parser.parse_args()
    with np.load(DATA) as archive:
        source = {name: archive[name] for name in archive.files}
    epochs = args.head_epochs + args.fine_tune_epochs
    model = ["model=pretrained", f"model.backbone={args.backbone}", "trainer.checkpoint.evaluate=last"]
    variants = {
        "from scratch": ["model.weights=null", "model.freeze=false", f"trainer.epochs={epochs}"],
        "frozen backbone + head": ["model.weights={weights}", f"trainer.epochs={epochs}"],
        "frozen + fine-tuned": ["model.weights={weights}", f"trainer.epochs={args.head_epochs}",
                                f"trainer.fine_tune.epochs={args.fine_tune_epochs}",
                                f"trainer.fine_tune.learning_rate={args.fine_tune_rate}"],
    }
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        started = time.perf_counter()
        pretrain_data = digits_npz(scratch / "digits-0-4.npz", source, range(0, 5), args.size, args.pretrain_images,
                                   None, seed=0)
        pretrained = run([*model, "model.weights=null", "model.freeze=false", "data=npz", f"data.path={pretrain_data}",
                          f"trainer.epochs={args.pretrain_epochs}", f"trainer.batch_size={args.pretrain_batch}",
                          f"output_dir={scratch / 'pretrain'}"])
        weights = scratch / "backbone.weights.h5"
        backbone_of(keras.models.load_model(pretrained.output_dir / "checkpoints" / "last.keras")).save_weights(weights)
        print(f"pretrained {args.backbone} on digits 0-4 ({args.pretrain_images} images, {args.size}x{args.size}, "
              f"{args.pretrain_epochs} epochs): test accuracy {pretrained.test_metrics['test_accuracy']:.4f}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)

        accuracy: dict[str, list[float]] = {name: [] for name in variants}
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for seed in args.seeds:
            data = digits_npz(scratch / f"digits-5-9-{seed}.npz", source, range(5, 10), args.size, None,
                              args.per_class, seed)
            for name, overrides in variants.items():
                result = run([*model, *(override.format(weights=weights) for override in overrides), "data=npz",
                              f"data.path={data}", f"seed={seed}", f"output_dir={scratch / f'{name}-{seed}'}"])
                accuracy[name].append(result.test_metrics["test_accuracy"])
                seconds[name].append(sum(result.history["epoch_time"]))
                print(f"seed {seed}  {name:<24} test accuracy {accuracy[name][-1]:.4f}  "
                      f"training {seconds[name][-1]:.1f} s", flush=True)

    print(f"\n{args.per_class} images per class of digits 5-9, {epochs} epochs each "
          f"(fine-tuned: {args.head_epochs} + {args.fine_tune_epochs} at {args.fine_tune_rate:g}), "
          f"mean of seeds {' '.join(map(str, args.seeds))}:")
    print("| variant | test accuracy per seed | mean | training time, mean |")
    print("|---|---|---|---|")
    for name in variants:
        print(f"| {name} | {' '.join(f'{value:.3f}' for value in accuracy[name])} | "
              f"{statistics.mean(accuracy[name]):.3f} | {statistics.mean(seconds[name]):.1f} s |")
    gain = 100 * (statistics.mean(accuracy["frozen + fine-tuned"]) - statistics.mean(accuracy["from scratch"]))
    print(f"fine-tuned - from scratch: {gain:+.1f} points (target >= +{TARGET_POINTS:g}): "
          f"{'met' if gain >= TARGET_POINTS else 'NOT met'}")


if __name__ == "__main__":
    main()
