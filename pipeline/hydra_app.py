"""An entry point's Hydra app (`@hydra.main`) run from the command line with one-line errors.

Before Hydra sees the command line it is read here with the same flags (`read`), so a bad flag is one line and
exit 2 instead of Hydra's usage text, and the entry point knows the overrides and whether this is a multirun.
`run` then calls the app; Hydra raises its errors (HYDRA_FULL_ERROR) instead of printing a traceback and
exiting 1, and they become one line here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NoReturn

import hydra
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from pipeline.compose import one_line_hydra_error
from pipeline.config import CONF_DIR
from pipeline.errors import PipelineError

VERSION_BASE = "1.3"  # no chdir into the output folder
# Flags that make Hydra show something (help, config, info, completion) instead of running jobs; --resolve without
# --cfg or --help is Hydra's usage error, also reported before any job.
SHOW_FLAGS = ("help", "hydra_help", "version", "cfg", "info", "shell_completion", "resolve")
INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


@dataclass(frozen=True)
class CommandLine:
    argv: list[str]  # as Hydra will read it
    overrides: list[str]
    multirun: bool
    runs_jobs: bool  # False when a flag asks Hydra to show something instead


def read(argv: list[str]) -> CommandLine:
    """The command line as Hydra 1.3's parser reads it (its flags: --hydra-help); a bad flag is a one-line error."""
    args = _flags_parser().parse_args(argv)
    if args.experimental_rerun is not None:  # @hydra.main's own, before its command line: not offered here
        raise PipelineError(f"--experimental-rerun {args.experimental_rerun}: not supported; run again with the "
                            "job's .hydra/overrides.yaml as overrides")
    multirun = bool(args.multirun) or f"hydra.mode={RunMode.MULTIRUN.name}" in args.overrides
    return CommandLine(list(argv), list(args.overrides), multirun,
                       runs_jobs=not any(getattr(args, flag) for flag in SHOW_FLAGS))


class _FlagsParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, instead of the usage text and exit 2."""
        unknown = message.removeprefix("unrecognized arguments: ")
        if unknown != message:
            raise PipelineError(f"{unknown}: unknown option; pass key=value overrides, or see --help")
        raise PipelineError(message)


def _flags_parser() -> argparse.ArgumentParser:
    parser = _FlagsParser(add_help=False)
    for flags in (("--help", "-h"), ("--hydra-help",), ("--version",), ("--resolve",), ("--run", "-r"),
                  ("--multirun", "-m"), ("--shell-completion", "-sc")):
        parser.add_argument(*flags, action="store_true")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    for flags in (("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn"), ("--config-dir", "-cd"),
                  ("--experimental-rerun",)):
        parser.add_argument(*flags)
    parser.add_argument("--info", "-i", const="all", nargs="?", choices=INFO_CHOICES)
    parser.add_argument("overrides", nargs="*")
    return parser


def app(task: Callable[[Any], Any], config_name: str) -> Callable[[], None]:
    """`task` as a Hydra app on `conf/<config_name>.yaml`: called once per job (with -m, each job)."""
    return hydra.main(version_base=VERSION_BASE, config_path=str(CONF_DIR), config_name=config_name)(task)


def run(hydra_app: Callable[[], None], command: CommandLine, config_name: str) -> None:
    """Run the app on `command`; Hydra's errors (a bad override, its usage errors) become one line."""
    try:
        with _argv(command.argv), _hydra_raises():
            hydra_app()
    except (HydraException, OmegaConfBaseException) as error:
        raise PipelineError(one_line_hydra_error(error, command.overrides, config_name)) from None
    except ValueError as error:  # Hydra's own usage errors (--resolve without --cfg, -sc without install=...)
        if not _raised_in_hydra(error):
            raise
        raise PipelineError(str(error)) from None


def show(command: CommandLine, config_name: str) -> None:
    """--help, --cfg, --info, ...: what Hydra shows about `conf/<config_name>.yaml` without running anything."""
    run(app(_runs_nothing, config_name), command, config_name)


def _runs_nothing(cfg: Any) -> None:
    raise AssertionError("Hydra's show flags run no job")


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    """@hydra.main reads its command line from sys.argv."""
    previous = sys.argv
    sys.argv = [previous[0], *argv]
    try:
        yield
    finally:
        sys.argv = previous


@contextlib.contextmanager
def _hydra_raises() -> Iterator[None]:
    """Hydra documents HYDRA_FULL_ERROR=1 as re-raising errors instead of printing them and exiting 1."""
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def _raised_in_hydra(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and str(frame.tb_frame.f_globals.get("__name__", "")).startswith("hydra.")
