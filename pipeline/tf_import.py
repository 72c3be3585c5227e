"""TensorFlow's first import in a process: without garbage collections, and without the lines a user can do nothing
about (its start-up lines and false retracing warnings).

Collections: Keras and TensorFlow make a great many objects as they load, and Python's full collections,
set off by that growth, walk every object made so far, again and again; what the import makes lives as long as the
process. So the collector is off while `keras` or `tensorflow` loads, and what is alive then is frozen out of it
(`gc.freeze()`): later collections walk only what the run makes.

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
import gc
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from typing import Iterator

RETRACING_WARNING = "triggered tf.function retracing"


# Whichever of them a process imports first loads the other inside it.
FIRST_IMPORTS = ("keras", "tensorflow")


def prepare_tensorflow_import() -> None:
    """Load TensorFlow, when something first imports it, as the module docstring says; call before anything imports
    TensorFlow."""
    if any(name in sys.modules for name in FIRST_IMPORTS):
        return
    noise_asked_for = os.environ.get("PIPELINE_DEBUG") == "1" or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
    sys.meta_path.insert(0, _FirstImport(quiet=not noise_asked_for))


def _not_a_retracing_warning(record: logging.LogRecord) -> bool:
    return RETRACING_WARNING not in record.getMessage()


class _FirstImport(importlib.abc.MetaPathFinder):
    """Finds `keras` and `tensorflow` the usual way, once each, and has their loaders run as `_FirstLoader`."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.waiting = set(FIRST_IMPORTS)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.waiting:
            return None
        self.waiting.discard(fullname)
        if not self.waiting:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the finders after this one (it is first)
        if spec is not None and spec.loader is not None:
            spec.loader = _FirstLoader(spec.loader, quiet=self.quiet and fullname == "tensorflow")
        return spec


class _FirstLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, quiet: bool):
        self._loader = loader
        self._quiet = quiet

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self._loader  # the module keeps its own loader
        collecting = gc.isenabled()  # False inside the other one's import
        gc.disable()
        try:
            with _stderr_held_back() if self._quiet else contextlib.nullcontext():
                self._loader.exec_module(module)
            gc.freeze()
        finally:
            if collecting:
                gc.enable()
        if self._quiet:
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
