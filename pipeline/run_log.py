"""A run's console output also written to its log file, which goes to MLflow with the run."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator, TextIO


class _Tee:
    def __init__(self, stream: TextIO, log: TextIO):
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        if not self._log.closed:  # a logging handler made during the run keeps this stream after the run's end
            self._log.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        if not self._log.closed:
            self._log.flush()
        self._stream.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the console's
        return getattr(self._stream, name)


@contextlib.contextmanager
def teed_to(path: Path) -> Iterator[None]:
    """stdout and stderr also appended to `path` (Hydra's job log, where its logging records go too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as log:  # line-buffered: the file is whole up to the last line at any moment
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(stdout, log), _Tee(stderr, log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = stdout, stderr
