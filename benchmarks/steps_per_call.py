"""When `trainer.steps_per_execution=auto`'s probe pays for itself: whole runs of the pipeline (`tracking=none`, in
this process) at one step per call against the same runs at the steps per call the probe picks, for runs of
several lengths.

    python -m benchmarks.steps_per_call [--rounds 3] [--epochs 2 10 40] [--networks mlp small_cnn]

The probe traces a step function of its own and times a few steps; N steps per call then save the dispatch of
N - 1 calls per call. The benchmark probes every run (`trainer.PROBE_MIN_RUN_STEPS` set to 0, the step times it
cached cleared before each run) and prints, per network and run length, the median seconds of both variants, their
difference (what probing and batching cost, negative when they save) and the run length where the two would break
even. A first, untimed run warms the process up; runs alternate within each round; data: the MNIST sample (1,800
training images).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import keras

from pipeline import trainer
from pipeline.compose import compose_config, validate
from pipeline.config import PROJECT_ROOT
from pipeline.core import RunOptions, run_pipeline
from pipeline.data import load_data
from pipeline.memory import release_memory

SAMPLE = PROJECT_ROOT.parent / "shared" / "data" / "mnist-sample.npz"
NETWORKS = {  # the README's default MLP and tutorial 000's small CNN at their batch sizes
    "mlp": ["model=mlp", "trainer.batch_size=32"],
    "small_cnn": ["model=small_cnn", "trainer.batch_size=64"],
}
VARIANTS = {"1 step per call": "trainer.steps_per_execution=1", "auto, probed": "trainer.steps_per_execution=auto"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2, 10, 40])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    args = parser.parse_args()
    trainer.PROBE_MIN_RUN_STEPS = 0  # probe every run, however short: that is what is measured

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        # Not timed: the process's first run warms TensorFlow up (its runtime, oneDNN's kernels).
        run_pipeline(validate(compose_config(["data=npz", f"data.path={SAMPLE}", "trainer.epochs=1",
                                              "trainer.verbose=0", "tracking=none", f"output_dir={scratch}/out"])))
        for network in args.networks:
            for epochs in args.epochs:
                common = ["data=npz", f"data.path={SAMPLE}", *NETWORKS[network], "optimizer=adam",
                          f"trainer.epochs={epochs}", "trainer.verbose=0", "tracking=none", f"output_dir={scratch}/out"]
                settings = validate(compose_config(common))
                steps = trainer.steps_in_epoch(load_data(settings.data), settings.trainer.batch_size) * epochs
                seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
                picked: set[int] = set()
                seen = StepsPerCall()
                for round_ in range(args.rounds):
                    order = list(VARIANTS) if round_ % 2 == 0 else list(VARIANTS)[::-1]
                    for name in order:
                        trainer._probed.clear()  # each run probes, as a new process would
                        started = time.perf_counter()
                        run_pipeline(validate(compose_config([*common, VARIANTS[name]])), RunOptions(callbacks=[seen]))
                        seconds[name].append(time.perf_counter() - started)
                        release_memory()
                        if name == "auto, probed":
                            picked.add(seen.steps_per_execution)
                        print(f"{network} {steps} steps round {round_ + 1} {name:<16} {seconds[name][-1]:.2f} s",
                              flush=True)
                rows.append((network, steps, sorted(picked), {n: statistics.median(v) for n, v in seconds.items()}))

    print(f"\nmedian of {args.rounds} rounds, whole runs (tracking=none) on the MNIST sample:\n")
    print("| network | training steps | 1 step per call | auto, probed (steps per call) | auto - 1 |")
    print("|---|---|---|---|---|")
    for network, steps, picked, median in rows:
        one, auto = median["1 step per call"], median["auto, probed"]
        print(f"| {network} | {steps} | {one:.2f} s | {auto:.2f} s ({', '.join(map(str, picked))}) | "
              f"{auto - one:+.2f} s |")
    for network in args.networks:
        # auto - 1 against the run's length, a line through the shortest and the longest run: its value at the
        # shortest is mostly the probe, its slope what batching saves a step, and it crosses zero at break-even.
        (short, _, first), *_, (long, _, last) = [row[1:] for row in rows if row[0] == network]
        cost, final = (m["auto, probed"] - m["1 step per call"] for m in (first, last))
        saved_per_step = (cost - final) / (long - short)
        if cost <= 0:
            verdict = f"probing already pays at {short} steps"
        elif saved_per_step > 0:
            verdict = f"break-even near {short + cost / saved_per_step:.0f} training steps"
        else:
            verdict = "batching saved nothing measurable"
        print(f"- {network}: probing and batching {cost:+.2f} s at {short} steps, {final:+.2f} s at {long} "
              f"({saved_per_step * 1e3:.2f} ms a step): {verdict} (auto probes runs from {PROBE_MIN_RUN_STEPS} steps)")


class StepsPerCall(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.steps_per_execution = self.model.steps_per_execution


PROBE_MIN_RUN_STEPS = trainer.PROBE_MIN_RUN_STEPS  # the pipeline's own, read before main() lowers it

if __name__ == "__main__":
    main()
