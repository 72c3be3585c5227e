"""Transfer learning with weights made here (ImageNet's cannot be downloaded on our machines): issue 21's proof.

    PYTHONPATH=. python benchmarks/transfer.py [--seeds 1 2 3] [--size 32] [--pretrain-images 6000]
        [--pretrain-epochs 3] [--pretrain-batch 16] [--head-epochs 5] [--fine-tune-epochs 15] [--fine-tune-rate 1e-3]
        [--per-class 50] [--dropout 0.2]

1. A randomly initialised backbone (`--backbone`, default MobileNetV3Small) under the pipeline's head, built by
   `model=python model.builder=benchmarks.transfer:random_backbone` (see there why not `model=pretrained
   model.weights=null`), is trained by `run_pipeline` on digits 0-4 of ../shared/data/mnist-train-22k.npz, upscaled
   to --size (bilinear; grayscale, repeated to 3 channels), and its weights are saved (`backbone.save_weights`).
2. On digits 5-9 (relabelled 0-4), --per-class training images per class (the pipeline holds out a tenth of them for
   validation) and the 2,000 test digits' 5-9, three variants, each with the same epochs (head + fine-tune) and seed:
   from scratch (the same random backbone, unfrozen); `model=pretrained` with the saved weights, frozen, and a new
   head; the same, then `trainer.fine_tune` (the backbone unfrozen, a fresh Adam at --fine-tune-rate). Each is
   tested with the weights it ends with.
Printed: the pretraining's test accuracy (on digits 0-4), each run's test accuracy and training time (the sum of its
epoch times, both phases), then per variant the mean over the seeds, and the issue's target (fine-tuned >= from
scratch + 5 points).
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
from pipeline.config import PROJECT_ROOT, PretrainedModel
from pipeline.core import run_pipeline
from pipeline.memory import release_memory
from pipeline.model import backbone_of, build_model

DATA = PROJECT_ROOT.parent / "shared" / "data" / "mnist-train-22k.npz"
TARGET_POINTS = 5.0


BATCH_NORM_MOMENTUM = 0.9


def random_backbone(input_shape: tuple[int, int, int], num_classes: int, backbone: str,
                    dropout: float) -> keras.Model:
    """`model=pretrained model.backbone=<backbone> model.weights=null model.freeze=false`, with every BatchNorm layer
    averaging its statistics at Keras's usual momentum: some keras.applications backbones (MobileNetV3's 0.999) are
    set for ImageNet's many steps, and a short pretraining would leave the moving statistics, which the frozen
    backbone (training=False) uses, far from the data's. The weights are the same variables, so the backbone's saved
    weights load into `model=pretrained`, whose own momentum matters no more once it is frozen in inference mode."""
    model = build_model(PretrainedModel(name="pretrained", backbone=backbone, weights=None, freeze=False,
                                        dropout=dropout), input_shape, num_classes)
    for layer in backbone_of(model).layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    return model


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
    parser.add_argument("--pretrain-images", type=int, default=6000)
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--pretrain-batch", type=int, default=16)
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--fine-tune-epochs", type=int, default=15)
    parser.add_argument("--fine-tune-rate", type=float, default=1e-3)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--dropout", type=float, default=0.2, help="before the output layer, in every variant")
    args = parser.parse_args()
    with np.load(DATA) as archive:
        source = {name: archive[name] for name in archive.files}
    epochs = args.head_epochs + args.fine_tune_epochs
    random = ["model=python", "model.builder=benchmarks.transfer:random_backbone",
              f"+model.kwargs.backbone={args.backbone}", f"+model.kwargs.dropout={args.dropout}",
              "trainer.checkpoint.evaluate=last"]
    pretrained_model = ["model=pretrained", f"model.backbone={args.backbone}", "model.weights={weights}",
                        f"model.dropout={args.dropout}", "trainer.checkpoint.evaluate=last"]
    variants = {
        "from scratch": [*random, f"trainer.epochs={epochs}"],
        "frozen backbone + head": [*pretrained_model, f"trainer.epochs={epochs}"],
        "frozen + fine-tuned": [*pretrained_model, f"trainer.epochs={args.head_epochs}",
                                f"trainer.fine_tune.epochs={args.fine_tune_epochs}",
                                f"trainer.fine_tune.learning_rate={args.fine_tune_rate}"],
    }
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        started = time.perf_counter()
        pretrain_data = digits_npz(scratch / "digits-0-4.npz", source, range(0, 5), args.size, args.pretrain_images,
                                   None, seed=0)
        pretrained = run([*random, "data=npz", f"data.path={pretrain_data}",
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
                result = run([*(override.format(weights=weights) for override in overrides), "data=npz",
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
