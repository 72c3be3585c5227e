"""Ctrl-C and SIGTERM, delivered for real: a KeyboardInterrupt at once, or during training a request raised at the
next check; a second one at once."""

import os
import signal

import pytest

from pipeline import stop


@pytest.fixture(params=[signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def stop_signal(request):
    """The signal, sent to this process with pipeline.stop's handlers installed."""
    before = {signum: signal.getsignal(signum) for signum in stop.STOP_SIGNALS}
    with stop.handled():
        yield lambda: os.kill(os.getpid(), request.param)
    assert not stop.requested()  # a request ends with the handlers
    assert {signum: signal.getsignal(signum) for signum in stop.STOP_SIGNALS} == before


def test_a_signal_outside_training_interrupts_at_once(stop_signal):
    with pytest.raises(KeyboardInterrupt):
        stop_signal()


def test_a_signal_during_training_becomes_a_request_raised_at_the_next_check(stop_signal):
    checks = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred_during_training():
            stop_signal()  # training goes on
            checks.append(stop.requested())
            stop.raise_if_requested()  # what the trainers' StopOnRequest callback does before the next step
            checks.append("not reached")
    assert checks == [True]
    assert not stop.requested()  # raised once, then cleared


def test_a_request_after_the_last_check_is_raised_when_training_ends(stop_signal):
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred_during_training():
            stop_signal()
    assert not stop.requested()


def test_a_second_signal_while_one_is_pending_interrupts_at_once(stop_signal):
    checks = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred_during_training():
            stop_signal()
            checks.append("noted")
            stop_signal()
            checks.append("not reached")
    assert checks == ["noted"]


def test_a_signal_swallowed_outside_training_still_stops_the_next_training_step(stop_signal):
    try:
        stop_signal()
    except KeyboardInterrupt:
        pass  # as a finalizer inside TensorFlow may do
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred_during_training():
            stop.raise_if_requested()


def test_training_without_a_request_ends_normally(stop_signal):
    with stop.deferred_during_training():
        stop.raise_if_requested()
    with pytest.raises(KeyboardInterrupt):  # and a signal interrupts at once again afterwards
        stop_signal()
