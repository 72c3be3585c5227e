"""Liveness of RUNNING runs: each open run refreshes a heartbeat tag, and runs whose process died without a word
(kill -9, the OOM killer, a lost machine) are closed KILLED by the next start on the store, so they can be resumed.

A daemon thread stamps the run's `heartbeat` tag (epoch seconds) every min(stale_after / 4, 60 s) through
MlflowClient (thread-safe; the fluent API's active run is per thread). The run also records where it runs (`host`,
`pid`) and the `stale_after` it keeps to: a RUNNING run whose last stamp (or, without one, whose start) is older than
its own stale_after is dead, whatever the closing process's setting. No Keras: the UI and sweep launchers close too.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from mlflow import MlflowClient
from mlflow.entities import Run, RunTag

from pipeline import checkpoint_files
from pipeline.config import MlflowTracking
from pipeline.periodic import PeriodicThread
from pipeline.tracking.runs import KILLED, RUNNING, close_run

HEARTBEAT_TAG = "heartbeat"
HOST_TAG = "host"
PID_TAG = "pid"
STALE_AFTER_TAG = "stale_after"
KILLED_REASON_TAG = "killed_reason"
LONGEST_INTERVAL_S = 60.0
_swept_for_dead_runs: set[tuple[str, str]] = set()  # (tracking uri, experiment): where this process closed them
OUTPUT_DIR_TAG = "output_dir"  # provenance's: where the run's process wrote its checkpoints


class Heartbeat:
    """`start()` records the run's host, pid and stale_after, then stamps it until `stop()` (or the block's end)."""

    def __init__(self, client: MlflowClient, run_id: str, stale_after: float):
        self.client, self.run_id, self.stale_after = client, run_id, stale_after
        self.interval = min(stale_after / 4, LONGEST_INTERVAL_S)
        self._beats = PeriodicThread(self.interval, self._beat_quietly, name=f"mlflow-heartbeat-{run_id[:8]}")

    def start(self, recorded: bool = False) -> Heartbeat:
        """`recorded`: the run was created with `liveness_tags` already (no request of its own)."""
        if not recorded:
            tags = liveness_tags(self.stale_after)
            self.client.log_batch(self.run_id, tags=[RunTag(key, value) for key, value in tags.items()])
        self._beats.start()
        return self

    def stop(self) -> None:
        self._beats.stop()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def beat(self) -> None:
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, _now())

    def _beat_quietly(self) -> None:
        try:
            self.beat()
        except Exception:  # noqa: BLE001 - a store hiccup must not stop training; the next beat tries again
            pass


def liveness_tags(stale_after: float) -> dict[str, str]:
    """Where the run runs, the stale_after it keeps to and its first stamp: given to create_run, or logged by start."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), STALE_AFTER_TAG: f"{stale_after:g}",
            HEARTBEAT_TAG: _now()}


def _now() -> str:
    return f"{time.time():.1f}"


def last_sign_of_life(run: Run) -> float:
    """Epoch seconds of the run's last heartbeat, or of its start when it has none (a run from before heartbeats)."""
    beat = run.data.tags.get(HEARTBEAT_TAG)
    return float(beat) if beat else run.info.start_time / 1000


def is_dead(run: Run, stale_after: float, now: float) -> bool:
    """RUNNING with its heartbeat older than its own stale_after (`stale_after` for a run that recorded none)."""
    own = run.data.tags.get(STALE_AFTER_TAG)
    return run.info.status == RUNNING and now - last_sign_of_life(run) > (float(own) if own else stale_after)


def process_is_gone(run: Run) -> bool:
    """The run's process recorded on this machine no longer exists (a kill -9 seen at once, without waiting for the
    heartbeat to go stale). Only for a resume the user asked for: another container can share the host's name."""
    host, pid = run.data.tags.get(HOST_TAG), run.data.tags.get(PID_TAG)
    if host != socket.gethostname() or not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


def whereabouts(run: Run, now: float) -> str:
    """`on host h (pid p), last heartbeat 12 s ago`, from what the run recorded."""
    host, pid = run.data.tags.get(HOST_TAG, "an unknown host"), run.data.tags.get(PID_TAG, "unknown")
    beat = "last heartbeat" if HEARTBEAT_TAG in run.data.tags else "no heartbeat, started"
    return f"on {host} (pid {pid}), {beat} {now - last_sign_of_life(run):.0f} s ago"


def stale_reason(run: Run, now: float) -> str:
    since = datetime.fromtimestamp(last_sign_of_life(run), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"no heartbeat since {since} ({whereabouts(run, now)})"


def close_dead_run(client: MlflowClient, run: Run, reason: str) -> None:
    """KILLED, with `reason` (why it is dead, where it ran) as its `killed_reason` tag; the checkpoints
    its process left in its output folder (when this machine sees that folder) are logged first, as a run that ends
    KILLED by Ctrl-C logs them, so that resume continues from them."""
    left = Path(run.data.tags.get(OUTPUT_DIR_TAG, "")) / checkpoint_files.FOLDER
    if run.data.tags.get(OUTPUT_DIR_TAG) and left.is_dir() and any(left.iterdir()):
        checkpoint_files.settle(left)  # killed mid-save: one checkpoint goes up, not half of the next
        client.log_artifacts(run.info.run_id, str(left), checkpoint_files.FOLDER)
    client.set_tag(run.info.run_id, KILLED_REASON_TAG, reason)
    close_run(client, run.info.run_id, KILLED)


def close_dead_runs_once(client: MlflowClient, tracking: MlflowTracking, uri: str) -> None:
    """close_dead_runs at this process's first start on the store and experiment: a start's job, not each run's (a
    multirun's jobs and a sweep worker's trials would search the store each time)."""
    if (uri, tracking.experiment) not in _swept_for_dead_runs:
        close_dead_runs(client, tracking)
        _swept_for_dead_runs.add((uri, tracking.experiment))


def close_dead_runs(client: MlflowClient, tracking: MlflowTracking) -> list[str]:
    """Close the dead RUNNING runs of tracking.experiment (one search); print one line if there were any; their ids."""
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return []
    now = time.time()
    running = client.search_runs([experiment.experiment_id], filter_string=f"attributes.status = '{RUNNING}'")
    dead = [run for run in running if is_dead(run, tracking.stale_after, now)]
    for run in dead:
        close_dead_run(client, run, stale_reason(run, now))
    if dead:
        print(f"tracking: closed {len(dead)} run(s) of experiment {tracking.experiment} KILLED: their process stopped "
              f"without a word (no heartbeat within tracking.stale_after); resume=last or resume=<run id> continues "
              f"one: {', '.join(run.info.run_id for run in dead)}", flush=True)
    return [run.info.run_id for run in dead]
