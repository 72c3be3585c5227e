"""A run's console output also written to its log file, which goes to MLflow with the run.

The console gets the output as written (Keras's live progress bar); the file gets what a terminal finally shows of
each line, as plain text: a progress bar redrawn with carriage returns is its last drawing, one line per epoch, and
colour codes are dropped.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Iterator, TextIO

ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def shown(line: str) -> str:
    """What a terminal shows of `line` (no newline): the text after its last carriage return, without escape codes."""
    last_drawing = line.rstrip("\r").rsplit("\r", 1)[-1]
    return ANSI_ESCAPE.sub("", last_drawing).replace("\b", "").rstrip(" ")


class _Tee:
    def __init__(self, stream: TextIO, log: TextIO):
        self._stream, self._log = stream, log
        self._line = ""  # the log's unfinished line

    def write(self, text: str) -> int:
        if not self._log.closed:  # a logging handler made during the run keeps this stream after the run's end
            *lines, self._line = (self._line + text).split("\n")
            self._log.writelines(shown(line) + "\n" for line in lines)
            drawn_over, carriage_return, drawing = self._line.rpartition("\r")
            if carriage_return and drawing:  # a redrawn line is not kept: a long epoch's bar stays one drawing
                self._line = drawing
        return self._stream.write(text)

    def flush(self) -> None:
        if not self._log.closed:
            self._log.flush()
        self._stream.flush()

    def close_line(self) -> None:
        """The log's unfinished line written as it stands (the run's end)."""
        if self._line:
            self._log.write(shown(self._line))
            self._line = ""

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the console's
        return getattr(self._stream, name)


@contextlib.contextmanager
def teed_to(path: Path) -> Iterator[None]:
    """stdout and stderr also appended to `path` (Hydra's job log, where its logging records go too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:  # line-buffered: the file is whole up to the last line at any moment
        stdout, stderr = sys.stdout, sys.stderr
        tees = _Tee(stdout, log), _Tee(stderr, log)
        sys.stdout, sys.stderr = tees
        try:
            yield
        finally:
            sys.stdout, sys.stderr = stdout, stderr
            for tee in tees:
                tee.close_line()
