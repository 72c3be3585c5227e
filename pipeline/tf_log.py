"""What TensorFlow writes that a user can do nothing about, hidden: its start-up lines and false retracing warnings.

Start-up: its native libraries log through absl before absl's logging is set up (`WARNING: All log messages before
absl::InitializeLog()...`, the oneDNN and CUDA notices), so TF_CPP_MIN_LOG_LEVEL does not reach them, and two of its
extension modules carry their own copy of absl, hence each line twice. Only file descriptor 2 during
`import tensorflow` is held back, and shown after all if the import fails.

Retracing: TensorFlow counts traces by the traced function's Python code, so every new model in one process (a
sweep's trials, a multirun's jobs) looks like a retrace of Keras's one train, test and predict function: "5 out of
the last 9 calls to <function ...multi_step_on_iterator> triggered tf.function retracing". Each model's functions
are traced when it first trains, evaluates or predicts, as any new model's must be.

`PIPELINE_DEBUG=1` or `TF_CPP_MIN_LOG_LEVEL=0` show everything.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from typing import Iterator

RETRACING_WARNING = "triggered tf.function retracing"


def hide_tensorflow_noise() -> None:
    """Hide TensorFlow's start-up lines and false retracing warnings, unless asked for; call before anything imports
    TensorFlow."""
    asked_for = os.environ.get("PIPELINE_DEBUG") == "1" or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
    if asked_for or "tensorflow" in sys.modules:
        return
    sys.meta_path.insert(0, _QuietImport())


def _not_a_retracing_warning(record: logging.LogRecord) -> bool:
    return RETRACING_WARNING not in record.getMessage()


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` the usual way, once, and has its loader run with stderr held back."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader  # the module keeps its own loader
        with _stderr_held_back():
            self._loader.exec_module(module)
        logging.getLogger("tensorflow").addFilter(_not_a_retracing_warning)


@contextlib.contextmanager
def _stderr_held_back() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file inside the block; its text is shown if the block raises."""
    sys.stderr.flush()
    try:
        console = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(console, 2)
            os.close(console)
            if failed:
                held.seek(0)
                os.write(2, held.read())
