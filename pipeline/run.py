"""`python -m pipeline.run [key=value ...] [--cfg job]`: train and evaluate once."""

from __future__ import annotations

import sys
import time

from omegaconf import OmegaConf

from pipeline import cli
from pipeline.config import compose_config, validate

USAGE = """usage: python -m pipeline.run [key=value ...] [--cfg job]

Trains and evaluates one model. Config groups (conf/): data, model, optimizer, trainer, device, tracking,
experiment. Examples:
  python -m pipeline.run optimizer=adam
  python -m pipeline.run trainer=custom model=small_cnn data=npz data.path=../shared/data/mnist-sample.npz
  python -m pipeline.run experiment=mnist_small_cnn_sgd
  python -m pipeline.run --cfg job        # print the composed config
  python -m pipeline.run resume=<run id>  # continue a killed run from its last checkpoint"""


def main(argv: list[str] | None = None) -> None:
    with cli.reported_errors():
        command = cli.parse_args(sys.argv[1:] if argv is None else argv, USAGE)
        cfg = compose_config(command.overrides)
        if command.show_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return
        settings = validate(cfg)  # fail on a bad value before TensorFlow is imported
        from pipeline.data import load_data
        load_data(settings.data)  # bad data fails before TensorFlow too; run_pipeline reuses this read (kept)
        from pipeline.core import run_pipeline

        started = time.perf_counter()
        result = run_pipeline(cfg, overrides=command.overrides)
        print(f"\nTest metrics ({time.perf_counter() - started:.1f} s, output in {result.output_dir}):")
        for name in ("test_loss", "test_accuracy", "test_f1_macro"):
            print(f"  {name:<14} {result.test_metrics[name]:.4f}")
        if result.run_id:
            print(f"MLflow run {result.run_id} (python -m pipeline.ui to browse)")
        if result.model_id:
            print(f"Model models:/{result.model_id} (python -m pipeline.evaluate model=models:/{result.model_id})")


if __name__ == "__main__":
    main()
