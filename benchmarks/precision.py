"""Test accuracy of the tutorial presets under float32 and mixed_bfloat16: the rule for device.precision's default.

    python benchmarks/precision.py [--data ../shared/data/mnist-train-22k.npz] [--seeds 1 2 3] [--preset NAME ...]

Each preset of benchmarks/recipes.py (the tutorials' recipes) runs as
`python -m pipeline.run experiment=<preset> data=npz data.path=<data> tracking=none seed=<s>` does (`run_pipeline`),
once with `device.precision=float32` and once with `device.precision=mixed_bfloat16`, alternating which goes first,
in one process. Printed: every run's test accuracy and training throughput, then per preset the mean test accuracy
of the seeds per precision, the difference, and whether every preset stays within 0.5 points of float32 (the rule
for making `device.precision=auto` the default; README, Speed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from recipes import RECIPES, throughput

from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.core import run_pipeline
from pipeline.data import load_data
from pipeline.memory import release_memory

DATA = PROJECT_ROOT.parent / "shared" / "data" / "mnist-train-22k.npz"
PRECISIONS = ("float32", "mixed_bfloat16")
TOLERANCE_POINTS = 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DATA, help="an .npz in Keras's mnist.npz layout")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--preset", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()

    accuracies: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for preset in args.preset:
            accuracies[preset] = {precision: [] for precision in PRECISIONS}
            for seed in args.seeds:
                for precision in PRECISIONS if seed % 2 else PRECISIONS[::-1]:  # alternate who goes first
                    release_memory()
                    result = run_pipeline(validate(compose_config([
                        f"experiment={preset}", "data=npz", f"data.path={args.data.resolve()}", f"seed={seed}",
                        f"device.precision={precision}", "tracking=none", "trainer.verbose=0",
                        f"output_dir={scratch}/{preset}-{seed}-{precision}",
                    ])))
                    accuracy = result.test_metrics["test_accuracy"]
                    accuracies[preset][precision].append(accuracy)
                    speed = throughput(len(load_data(result.settings.data).train), result.history["epoch_time"])
                    print(f"{preset:<26} seed {seed} {precision:<15} test accuracy {accuracy:.4f}  "
                          f"{speed:>8,.0f} samples/s", flush=True)

    print(f"\n| preset | test accuracy per seed, float32 | mixed_bfloat16 | mean float32 / mixed_bfloat16 | "
          f"difference | within {TOLERANCE_POINTS} pt |")
    print("|---|---|---|---|---|---|")
    within = []
    for preset, by_precision in accuracies.items():
        means = [statistics.mean(by_precision[precision]) for precision in PRECISIONS]
        difference = 100 * (means[1] - means[0])
        within.append(abs(difference) <= TOLERANCE_POINTS)
        seeds = [" ".join(f"{value:.3f}" for value in by_precision[precision]) for precision in PRECISIONS]
        print(f"| `{preset}` | {seeds[0]} | {seeds[1]} | {means[0]:.4f} / {means[1]:.4f} | {difference:+.2f} pt | "
              f"{'yes' if within[-1] else 'no'} |")
    verdict = "every preset is" if all(within) else "NOT every preset is"
    print(f"\n{verdict} within {TOLERANCE_POINTS} points of float32 (mean of {len(args.seeds)} seeds)")


if __name__ == "__main__":
    main()
