"""Ctrl-C (SIGINT) and SIGTERM as a request to stop: raised as KeyboardInterrupt at once, except while a model trains.

Python runs a signal handler at whatever bytecode the main thread is on, inside TensorFlow and Keras
internals too: there an exception can be swallowed (raised in a finalizer, the run trains on) or cut a
native object's teardown short (seen as a malloc abort). So during training the first request is only noted,
and the trainers' `StopOnRequest` callback raises it before the next compiled call (`steps_per_execution`
steps). A second signal while one is pending is raised at once: whoever presses Ctrl-C twice wants out now.
Every request stays noted until training sees it, so one raised at once and swallowed all the same still stops the
next training step. No TensorFlow import here: the CLI installs the handler before anything heavy is loaded.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_training = False
_requested = False


def on_stop_signal(signum, frame) -> None:
    global _requested
    pending, _requested = _requested, True
    if pending or not _training:
        raise KeyboardInterrupt


@contextlib.contextmanager
def handled(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Inside the block `signals` go to `on_stop_signal`; after it, the previous handlers and no request."""
    global _requested
    previous = {signum: signal.signal(signum, on_stop_signal) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested = False


def requested() -> bool:
    return _requested


def request() -> None:
    """Note a stop request (another worker's SIGTERM, for a multi-worker run)."""
    global _requested
    _requested = True


def raise_if_requested() -> None:
    global _requested
    if _requested:
        _requested = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred_during_training() -> Iterator[None]:
    """A stop request inside the block waits for `raise_if_requested` (or the block's end)."""
    global _training
    _training = True
    try:
        yield
    finally:
        _training = False
    raise_if_requested()  # a request that came after the last step
