"""`python -m sweeps.run [key=value ...] [--cfg job|hydra|all] [--help]`: an Optuna sweep over the pipeline's config
(conf/sweeps.yaml), with Hydra's flags where they make sense."""

from __future__ import annotations

import sys

from pipeline import cli, hydra_app
from pipeline.errors import PipelineError

CONFIG_NAME = "sweeps"
# Hydra's output folders name where the trials' folders go.
TRIALS_DIR_ALIASES = ("hydra.sweep.dir=", "hydra.run.dir=")


def main(argv: list[str] | None = None) -> None:
    with cli.reported_errors():
        args = hydra_app.parse(sys.argv[1:] if argv is None else argv)
        if hydra_app.is_multirun(args):
            raise PipelineError("-m: a sweep is many runs already; set sweep.n_trials (and sweep.n_workers)")
        if not hydra_app.runs_jobs(args):  # --help, --cfg, --info, ...: Hydra shows it
            hydra_app.show(args, CONFIG_NAME)
            return
        import optuna

        from sweeps.sweep import run_sweep

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own progress
        summary = run_sweep([_as_trials_dir(override) for override in args.overrides])
        print("\n".join(summary.lines()))


def _as_trials_dir(override: str) -> str:
    for alias in TRIALS_DIR_ALIASES:
        if override.startswith(alias):
            return "sweep.trials_dir=" + override.removeprefix(alias)
    return override


if __name__ == "__main__":
    main()
