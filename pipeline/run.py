"""`python -m pipeline.run [key=value ...] [-m] [--cfg job|hydra|all] [--help]`: train and evaluate, a Hydra app.

One run, or with -m a multirun of one run per combination of the sweep overrides (optimizer=sgd,adam ...),
grouped under one MLflow parent run. Every job's config is checked before TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import sys

from pipeline import cli, hydra_app, jobs

CONFIG_NAME = "config"


def main(argv: list[str] | None = None) -> None:
    with cli.reported_errors():
        args = hydra_app.parse(sys.argv[1:] if argv is None else argv)
        multirun = hydra_app.is_multirun(args)
        args.overrides = jobs.hydra_overrides(args.overrides, multirun)
        if not hydra_app.runs_jobs(args):  # --help, --cfg, --info, ...: Hydra shows it
            hydra_app.show(args, CONFIG_NAME)
            return
        checked = jobs.check_jobs(args.overrides, multirun)  # fail on a bad value before TensorFlow is imported
        with jobs.grouped(checked, args.overrides) if multirun else contextlib.nullcontext():
            hydra_app.launch(args, jobs.run_job, CONFIG_NAME)


if __name__ == "__main__":
    main()
