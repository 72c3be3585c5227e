"""`python -m sweeps.run [key=value ...] [--cfg job|hydra|all] [--help]`: an Optuna sweep over the pipeline's config
(conf/sweeps.yaml), with Hydra's flags where they make sense."""

from __future__ import annotations

import signal
import sys

from pipeline import cli, hydra_app, stop
from pipeline.errors import PipelineError

CONFIG_NAME = "sweeps"
# Hydra's output folders name where the trials' folders go.
TRIALS_DIR_ALIASES = ("hydra.sweep.dir=", "hydra.run.dir=")


def main(argv: list[str] | None = None) -> None:
    # A closed terminal too: the worker processes, in process groups of their own, would outlive this one.
    with cli.reported_errors(stop_signals=(*stop.STOP_SIGNALS, signal.SIGHUP)):
        command = hydra_app.read(sys.argv[1:] if argv is None else argv)
        if command.multirun:
            raise PipelineError("-m: a sweep is many runs already; set sweep.n_trials (and sweep.n_workers)")
        if not command.runs_jobs:  # --help, --cfg, --info, ...: Hydra shows it
            hydra_app.show(command, CONFIG_NAME)
            return
        import optuna

        from sweeps.sweep import run_sweep

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own progress
        summary = run_sweep([_as_trials_dir(override) for override in command.overrides])
        print("\n".join(summary.lines()))


def _as_trials_dir(override: str) -> str:
    for alias in TRIALS_DIR_ALIASES:
        if override.startswith(alias):
            return "sweep.trials_dir=" + override.removeprefix(alias)
    return override


entry = cli.process_entry(main)

if __name__ == "__main__":
    entry()
