"""`python -m pipeline.run [key=value ...] [-m] [--cfg job|hydra|all] [--help]`: train and evaluate, a Hydra app.

One run, or with -m a multirun of one run per combination of the sweep overrides (optimizer=sgd,adam ...),
grouped under one MLflow parent run. Every job is checked before Hydra starts the first and TensorFlow is imported.
"""

from __future__ import annotations

import sys

from pipeline import cli, hydra_app, jobs

CONFIG_NAME = "config"
app = hydra_app.app(jobs.run_job, CONFIG_NAME)


def main(argv: list[str] | None = None) -> None:
    with cli.reported_errors():
        typed = hydra_app.read(sys.argv[1:] if argv is None else argv)
        command = hydra_app.read(jobs.hydra_overrides(typed.argv, typed.multirun))
        if command.runs_jobs:  # not --help, --cfg, --info, ...: Hydra shows those
            jobs.check_jobs(command.overrides, command.multirun)
        with jobs.MultirunParentRun.ended_with_the_jobs():
            hydra_app.run(app, command, CONFIG_NAME)


entry = cli.process_entry(main)

if __name__ == "__main__":
    entry()
