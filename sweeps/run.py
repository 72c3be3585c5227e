"""`python -m sweeps.run [key=value ...]`: an Optuna sweep over the pipeline's config (conf/sweeps.yaml)."""

from __future__ import annotations

import sys

from pipeline import cli

USAGE = """usage: python -m sweeps.run [key=value ...]

Runs an Optuna study, each trial one pipeline run (a nested MLflow run under the study's parent run).
Pipeline overrides pass through to every trial; sweep.* overrides set up the study (conf/sweep/). Examples:
  python -m sweeps.run                                   # learning rate, dropout, optimizer; 20 trials
  python -m sweeps.run sweep.n_trials=40 model=small_cnn trainer.epochs=10
  python -m sweeps.run sweep.pruner=hyperband sweep.sampler=random
  python -m sweeps.run sweep.study_name=lr-study         # the same name again resumes the study
  python -m sweeps.run sweep.n_workers=2                 # worker processes on this machine
  python -m sweeps.run sweep.storage=postgresql://user:pw@host/db tracking=server   # on several machines"""


def main(argv: list[str] | None = None) -> None:
    with cli.reported_errors():
        command = cli.parse_args(sys.argv[1:] if argv is None else argv, USAGE)
        if command.show_config:
            from omegaconf import OmegaConf

            from pipeline.config import compose_config

            print(OmegaConf.to_yaml(compose_config(command.overrides, config_name="sweeps"), resolve=True))
            return
        import optuna

        from sweeps.sweep import run_sweep

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own progress
        summary = run_sweep(command.overrides)
        print("\n".join(summary.lines()))


if __name__ == "__main__":
    main()
