"""Hydra's own command line for an entry point: its parser, its flags (-m, --cfg, --info, --help, ...), its run.

Hydra prints a failure as a traceback and exits 1; here every failure reaches `cli.reported_errors` instead,
so a bad override is one line and exit 2 like any other bad input.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Callable

from hydra._internal.utils import _run_hydra, get_args_parser
from hydra.errors import HydraException
from hydra.types import RunMode
from hydra.version import setbase
from omegaconf.errors import OmegaConfBaseException

from pipeline.compose import one_line_hydra_error
from pipeline.config import CONF_DIR
from pipeline.errors import PipelineError

VERSION_BASE = "1.3"  # as @hydra.main(version_base="1.3"): no chdir into the output folder
# Hydra's shortcuts for what a command line shows instead of running jobs.
SHOW_FLAGS = ("help", "hydra_help", "cfg", "info", "shell_completion")


def parse(argv: list[str]) -> argparse.Namespace:
    """Hydra's arguments; an unknown option is a one-line error."""
    parser = get_args_parser()

    def error(message: str) -> None:
        unknown = message.removeprefix("unrecognized arguments: ")
        if unknown != message:
            raise PipelineError(f"{unknown}: unknown option; pass key=value overrides, or see --help")
        raise PipelineError(message)

    parser.error = error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if args.experimental_rerun is not None:  # @hydra.main's own, before its command line: not offered here
        raise PipelineError(f"--experimental-rerun {args.experimental_rerun}: not supported; run again with the "
                            "job's .hydra/overrides.yaml as overrides")
    args.parser = parser  # Hydra's help prints the parser's flags
    return args


def runs_jobs(args: argparse.Namespace) -> bool:
    """False when a flag asks Hydra to show something (config, help, info) instead."""
    return not any(getattr(args, flag) for flag in SHOW_FLAGS)


def is_multirun(args: argparse.Namespace) -> bool:
    return bool(args.multirun) or f"hydra.mode={RunMode.MULTIRUN.name}" in args.overrides


def show(args: argparse.Namespace, config_name: str) -> None:
    """--help, --cfg, --info, ...: what Hydra shows about `conf/<config_name>.yaml` without running anything."""
    launch(args, _runs_nothing, config_name)


def _runs_nothing(cfg: Any) -> None:
    raise AssertionError("Hydra's show flags run no job")


def launch(args: argparse.Namespace, task: Callable[[Any], Any], config_name: str) -> None:
    """Run `task` for the job (or, with -m, each job) as @hydra.main would, with the config in conf/."""
    setbase(VERSION_BASE)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing a traceback and exiting 1
    overrides = list(args.overrides)
    try:
        _run_hydra(args=args, args_parser=args.parser, task_function=task, config_path=str(CONF_DIR),
                   config_name=config_name)
    except (HydraException, OmegaConfBaseException) as error:
        raise PipelineError(one_line_hydra_error(error, overrides, config_name)) from None
    except ValueError as error:  # Hydra's own usage errors (--resolve without --cfg, -sc without install=...)
        if not _raised_in_hydra(error):
            raise
        raise PipelineError(str(error)) from None


def _raised_in_hydra(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and str(frame.tb_frame.f_globals.get("__name__", "")).startswith("hydra.")
