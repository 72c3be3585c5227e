"""SIGTERM, delivered for real: a KeyboardInterrupt at once, or during training a request raised at the next check."""

import os
import signal

import pytest

from pipeline import stop


@pytest.fixture
def sigterm_as_stop_request():
    previous = signal.signal(signal.SIGTERM, stop.on_sigterm)
    yield
    signal.signal(signal.SIGTERM, previous)
    if stop.requested():  # a failed test must not leave a request for the next one
        with pytest.raises(KeyboardInterrupt):
            stop.raise_if_requested()


def test_sigterm_outside_training_interrupts_at_once(sigterm_as_stop_request):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    assert not stop.requested()


def test_sigterm_during_training_becomes_a_request_raised_at_the_next_check(sigterm_as_stop_request):
    checks = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred_during_training():
            os.kill(os.getpid(), signal.SIGTERM)  # training goes on
            checks.append(stop.requested())
            stop.raise_if_requested()  # what the trainers' StopOnRequest callback does before the next step
            checks.append("not reached")
    assert checks == [True]
    assert not stop.requested()  # raised once, then cleared


def test_a_request_after_the_last_check_is_raised_when_training_ends(sigterm_as_stop_request):
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred_during_training():
            os.kill(os.getpid(), signal.SIGTERM)
    assert not stop.requested()


def test_training_without_a_request_ends_normally(sigterm_as_stop_request):
    with stop.deferred_during_training():
        stop.raise_if_requested()
    with pytest.raises(KeyboardInterrupt):  # and SIGTERM interrupts at once again afterwards
        os.kill(os.getpid(), signal.SIGTERM)
