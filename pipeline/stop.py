"""Ctrl-C (SIGINT) and SIGTERM as a request to stop: raised as KeyboardInterrupt at once, except inside a
`deferred` block (a run, from before TensorFlow is imported to its end; a whole sweep and each worker's life; the
pre-flight's writes to the store).

Python runs a signal handler at whatever bytecode the main thread is on, inside library internals too: there an
exception can be swallowed (raised in a finalizer, the run trains on), cut a native object's teardown short (seen as
a malloc abort), or leave a lock taken (an Optuna journal's lock file, which every worker then waits on). So inside a
deferred block the first request is only noted, and raised at the next safe point, `raise_if_requested`: the
trainers' `StopOnRequest` callback before each compiled call (`steps_per_execution` steps), the pipeline before it
records a run and before it closes one, a sweep worker before each trial, the block's end; or at once inside an
`interruptible` wait (a sweep launcher waiting for its workers). A second signal while one is pending, or once a stop
is under way, is raised at once: whoever presses Ctrl-C twice wants out now. Every request stays noted until a safe
point sees it, so one raised at once and swallowed all the same still stops at the next one. No TensorFlow import
here: the CLI installs the handler before anything heavy is loaded.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_deferring = 0  # how many deferred blocks the main thread is in
_requested = False  # a request no safe point has raised yet
_stopping = False  # a request was raised: the process is stopping
_waiting = False  # in an interruptible wait


def on_stop_signal(signum, frame) -> None:
    global _requested
    pending, _requested = _requested, True
    if _waiting:  # raised where nothing swallows it: seen, as at a safe point
        raise_if_requested()
    if pending or _stopping or not _deferring:
        raise KeyboardInterrupt


@contextlib.contextmanager
def handled(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Inside the block `signals` go to `on_stop_signal`; after it, the previous handlers and no request."""
    _forget_requests()
    previous = {signum: signal.signal(signum, on_stop_signal) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _forget_requests()


def _forget_requests() -> None:
    global _requested, _stopping
    _requested = _stopping = False


def requested() -> bool:
    return _requested


def request() -> None:
    """Note a stop request (another worker's SIGTERM, for a multi-worker run)."""
    global _requested
    _requested = True


def raise_if_requested() -> None:
    """A safe point: a noted request is raised here."""
    global _requested, _stopping
    if _requested:
        _requested, _stopping = False, True
        raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside the block (a wait, where raising is safe) a stop request is raised at once, in a deferred block too."""
    global _waiting
    raise_if_requested()  # one noted just before
    _waiting = True
    try:
        yield
    finally:
        _waiting = False


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A stop request inside the block waits for `raise_if_requested` (or the block's end). Blocks nest."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    raise_if_requested()  # a request that came after the block's last safe point
