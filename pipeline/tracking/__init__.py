"""MLflow tracking for a pipeline run: `tracked_run` opens and closes the run, `RunTracker` records into it.

tracking=none never imports MLflow (it takes seconds to import); the core uses the same calls either way.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from pipeline.config import MlflowTracking, NoTracking, Settings, TrackingSettings
from pipeline.tracking.store import tracking_uri
from pipeline.tracking.tracker import RunTracker

if TYPE_CHECKING:
    from pipeline.tracking.heartbeat import Heartbeat
    from pipeline.tracking.mlflow_tracker import MlflowRunTracker

__all__ = ["RunTracker", "attach_console_log", "end_parent_run", "log_seed_groups", "open_parent_run", "tracked_run",
           "tracking_uri"]
SEED_GROUPS_CSV = "seed_groups.csv"  # a multirun parent run's statistics over seeds (pipeline.seed_groups)
TENSORBOARD_FOLDER = "tensorboard"  # tracking.tensorboard's logs, in a run's output folder and its MLflow artifacts
_parent_heartbeats: dict[str, Heartbeat] = {}  # the open parent runs of this process, alive while it lives


@contextmanager
def tracked_run(settings: Settings, *, overrides: Sequence[str], output_dir: Path,
                parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
                record: bool = True) -> Iterator[RunTracker]:
    """Check the store, start (or re-open with settings.resume) the run and record the config, on the run's
    recording thread (pipeline.tracking.recording) while the block goes on; close it FINISHED, KILLED (Ctrl-C,
    SIGTERM, TrainingStopped with tag `stopped`) or FAILED (tag `error`, error.txt), logging output_dir/checkpoints in
    every case, and re-raise. Without `record` (a multi-worker run's other workers) nothing is recorded;
    settings.resume's checkpoints can still be fetched."""
    if isinstance(settings.tracking, NoTracking):
        yield RunTracker()
        return
    if not record:
        from pipeline.tracking.mlflow_tracker import CheckpointSource

        yield CheckpointSource(tracking_uri(settings.tracking), settings.resume)
        return
    from pipeline.tracking.recording import RecordedRun

    def open_run() -> AbstractContextManager[MlflowRunTracker]:
        from pipeline.tracking.lifecycle import mlflow_run  # MLflow: imported on the recording thread

        return mlflow_run(settings, overrides=overrides, output_dir=output_dir, parent_run_id=parent_run_id, tags=tags)

    run = RecordedRun(open_run, settings.tracking, output_dir / TENSORBOARD_FOLDER)
    try:
        yield run
    except BaseException as error:
        run.finish(error)
        raise
    run.finish(None)


def open_parent_run(tracking: TrackingSettings, *, name: str, tags: Mapping[str, str]) -> str | None:
    """A RUNNING run that only groups others (a multirun's jobs name it as their parent), with a heartbeat until
    `end_parent_run`; None with tracking=none."""
    if isinstance(tracking, NoTracking):
        return None
    from mlflow import MlflowClient

    from pipeline.tracking.heartbeat import Heartbeat, liveness_tags
    from pipeline.tracking.runs import create_run

    uri = tracking_uri(tracking)
    client = MlflowClient(uri)
    run_id = create_run(client, tracking, uri, name=name, tags={**tags, **liveness_tags(tracking.stale_after)})
    _parent_heartbeats[run_id] = Heartbeat(client, run_id, tracking.stale_after).start(recorded=True)
    return run_id


def end_parent_run(tracking: MlflowTracking, run_id: str, status: str) -> None:
    """The parent run ended as its runs did: FINISHED, FAILED or KILLED (a child still RUNNING then is KILLED)."""
    from mlflow import MlflowClient

    from pipeline.tracking.runs import close_parent_run

    beating = _parent_heartbeats.pop(run_id, None)
    if beating:
        beating.stop()
    uri = tracking_uri(tracking)
    close_parent_run(MlflowClient(uri), run_id, status)


def log_seed_groups(tracking: MlflowTracking, run_id: str, metrics: Mapping[str, float], table_csv: str) -> None:
    """A multirun's statistics over seeds on its parent run: as metrics (searchable with mlflow.search_runs) and as
    SEED_GROUPS_CSV."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri(tracking))
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, value, now, 0) for name, value in metrics.items()])
    client.log_text(run_id, table_csv, SEED_GROUPS_CSV)


def attach_console_log(settings: Settings, run_id: str, output_dir: Path) -> None:
    """The run's log file again, complete: what the CLI printed after the run closed (its summary) included."""
    if isinstance(settings.tracking, NoTracking):
        return
    from mlflow import MlflowClient

    from pipeline.tracking.lifecycle import log_console_output

    log_console_output(MlflowClient(tracking_uri(settings.tracking)), run_id, output_dir)
