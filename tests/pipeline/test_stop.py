"""Ctrl-C and SIGTERM, delivered for real: a KeyboardInterrupt at once, or inside a deferred block (a run, a sweep
worker) a request raised at the next safe point; a second one at once."""

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
        with stop.deferred():
            stop_signal()  # training goes on
            checks.append(stop.requested())
            stop.raise_if_requested()  # what the trainers' StopOnRequest callback does before the next step
            checks.append("not reached")
    assert checks == [True]
    assert not stop.requested()  # raised once, then cleared


def test_a_request_after_the_last_check_is_raised_when_training_ends(stop_signal):
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred():
            stop_signal()
    assert not stop.requested()


def test_a_second_signal_while_one_is_pending_interrupts_at_once(stop_signal):
    checks = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred():
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
        with stop.deferred():
            stop.raise_if_requested()


def test_training_without_a_request_ends_normally(stop_signal):
    with stop.deferred():
        stop.raise_if_requested()
    with pytest.raises(KeyboardInterrupt):  # and a signal interrupts at once again afterwards
        stop_signal()


def test_blocks_nest_and_the_outer_one_still_defers(stop_signal):
    checks = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred():  # a sweep worker, around a run
            with stop.deferred():  # the run's training
                stop.raise_if_requested()
            stop_signal()  # between the two: still only noted
            checks.append(stop.requested())
    assert checks == [True]


def test_a_signal_while_a_raised_stop_cleans_up_interrupts_at_once(stop_signal):
    checks = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred():
            stop_signal()
            try:
                stop.raise_if_requested()
            except KeyboardInterrupt:  # the run closing KILLED, the trial told FAIL
                checks.append("cleaning up")
                stop_signal()  # Ctrl-C again: out now, not at the next safe point
                checks.append("not reached")
    assert checks == ["cleaning up"]


def test_inside_a_deferred_block_an_interruptible_wait_is_interrupted_at_once_and_sees_the_request(stop_signal):
    checks = []
    with pytest.raises(KeyboardInterrupt):
        with stop.deferred():  # a sweep's launcher
            with pytest.raises(KeyboardInterrupt):
                with stop.interruptible():  # waiting for its workers
                    stop_signal()
                    checks.append("not reached")
            checks.append(stop.requested())  # raised once: not raised again at the next wait
            with stop.interruptible():
                checks.append("waits again")
            stop_signal()  # a stop under way: Ctrl-C again goes through at once
            checks.append("not reached")
    assert checks == [False, "waits again"]


def test_a_request_noted_before_an_interruptible_wait_is_raised_as_it_starts(stop_signal):
    with stop.deferred():
        stop_signal()  # noted
        with pytest.raises(KeyboardInterrupt):
            with stop.interruptible():
                pass
