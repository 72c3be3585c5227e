"""Liveness of running trials: a heartbeat per trial, and failing the trials of workers that died.

Optuna's JournalStorage has no heartbeat of its own (only RDBStorage does), so the sweep keeps one that
works on every storage: a thread stamps the trial's `heartbeat` user attribute every interval; a RUNNING
trial whose stamp is older than the grace period belongs to a worker that was killed (e.g. `kill -9`).
Such a trial is failed and its parameters queued again as a new trial that records `retry_of` (as Optuna's
RetryFailedTrialCallback does, but on every storage); the retried trial then no longer counts towards n_trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from pipeline import stop
from pipeline.periodic import PeriodicThread

HEARTBEAT = "heartbeat"
RETRY_OF = "retry_of"  # on a queued retry: the number of the dead worker's trial it runs again
RETRIES = "retries"  # on a queued retry: how often these parameters have been retried, this time included


class Heartbeat:
    """`with Heartbeat(trial, interval):` stamps the trial until the block ends."""

    def __init__(self, trial: optuna.Trial, interval: float):
        self.trial = trial
        self.interval = interval
        self._beats = PeriodicThread(interval, self._beat, name=f"heartbeat-{trial.number}")

    def __enter__(self) -> "Heartbeat":
        self._beat()
        self._beats.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._beats.stop()

    def _beat(self) -> None:
        self.trial.set_user_attr(HEARTBEAT, time.time())


def is_stale(trial: FrozenTrial, grace_period: float, now: float) -> bool:
    if trial.state != TrialState.RUNNING:
        return False
    last = trial.user_attrs.get(HEARTBEAT)
    if last is None:  # asked but never started (killed in between): judge by its start time
        last = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(last) > grace_period


def fail_stale_trials(
    study: optuna.Study, grace_period: float, max_retries: int, on_failed: Callable[[FrozenTrial], None]
) -> list[FrozenTrial]:
    """Mark dead workers' RUNNING trials FAIL and queue their parameters again (up to `max_retries` times for one
    parameter set); `on_failed` closes their MLflow runs. Call under the study's claim lock."""
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial, grace_period, now):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):  # another worker failed or finished it first
            continue
        retries = int(trial.user_attrs.get(RETRIES, 0))
        if retries < max_retries:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number, RETRIES: retries + 1})
        on_failed(trial)
        failed.append(trial)
    return failed


def wait_for_running_trials(study: optuna.Study, poll_seconds: float, fail_stale: Callable[[], object]) -> None:
    """Block until no trial is RUNNING: other workers finish theirs, dead workers' trials turn FAIL."""
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        fail_stale()
        with stop.interruptible():
            time.sleep(poll_seconds)
