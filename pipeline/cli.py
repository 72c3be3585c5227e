"""What every entry point shares: argument splitting, one-line errors, Ctrl-C and SIGTERM as stop requests."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

from pipeline import stop
from pipeline.errors import PipelineError

USAGE_ERROR = 2
INTERRUPTED = 130


@dataclass(frozen=True)
class Command:
    overrides: list[str]
    show_config: bool  # --cfg job: print the composed config and exit


def parse_args(argv: list[str], usage: str) -> Command:
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage)
        raise SystemExit(0)
    show_config = False
    overrides: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in ("--cfg", "-c"):
            what = next(args, "job")
            if what != "job":
                raise PipelineError(f"--cfg {what}: only `--cfg job` is supported")
            show_config = True
        elif arg.startswith("-"):
            raise PipelineError(f"{arg}: unknown option; pass key=value overrides, --cfg job, or --help")
        else:
            overrides.append(arg)
    return Command(overrides, show_config)


@contextlib.contextmanager
def reported_errors(stop_signals: tuple[signal.Signals, ...] = stop.STOP_SIGNALS) -> Iterator[None]:
    """Turn failures into one line on stderr and a non-zero exit; PIPELINE_DEBUG=1 shows tracebacks. `stop_signals`
    (Ctrl-C and SIGTERM) stop the way pipeline.stop describes (exit 130)."""
    debug = os.environ.get("PIPELINE_DEBUG") == "1"
    try:
        with stop.handled(stop_signals):
            yield
    except PipelineError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None
    except KeyboardInterrupt:
        print("interrupted: stopped cleanly (the run is marked KILLED)", file=sys.stderr)
        raise SystemExit(INTERRUPTED) from None
    except Exception as error:  # noqa: BLE001 - the last line of defence for users
        if debug:
            raise
        print(f"error: {type(error).__name__}: {error} (PIPELINE_DEBUG=1 shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


def process_entry(main: Callable[[], None]) -> Callable[[], None]:
    """`main` as a process's whole work (`python -m ...` and the installed commands): once it returns or raises, the
    interpreter exits without its final garbage collections. They walk every object TensorFlow and MLflow made,
    which takes longer than a short run trains, only to free memory the exiting process hands back anyway. Exit
    handlers still run; the run's files, stores and runs are closed by then. Not for a `main` called in a process
    that goes on (tests): what is frozen is never collected."""

    @functools.wraps(main)
    def entry() -> None:
        try:
            main()
        finally:
            gc.freeze()

    return entry
