"""One MLflow run from start to its final status: create or re-open (the run `tracking.resume` finds), record the
config, keep a heartbeat, close as it ended. A process's first run first closes the experiment's dead runs
(tracking.heartbeat)."""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunTag
from mlflow.environment_variables import MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, MLFLOW_TRACKING_URI
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from pipeline import checkpoint_files
from pipeline.config import RESUME_LAST, MlflowTracking, Settings
from pipeline.credentials import redact
from pipeline.errors import TrainingStopped, one_line
from pipeline.tracking import TENSORBOARD_FOLDER, heartbeat
from pipeline.tracking.mlflow_tracker import MlflowRunTracker
from pipeline.tracking.provenance import run_tags
from pipeline.tracking.resume import resumed_run, run_params
from pipeline.tracking.runs import FAILED, FINISHED, KILLED, create_run
from pipeline.tracking.store import check_store, tracking_uri

ERROR_TAG_LENGTH = 500
# MLflow samples system metrics every 10 s by default and drops a sample cut short by the run's end: a run
# shorter than that would record none. MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, when set, wins.
SYSTEM_METRICS_INTERVAL_S = 2
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # not four lines of start and stop per run


@contextmanager
def mlflow_run(settings: Settings, *, overrides: Sequence[str], output_dir: Path,
               parent_run_id: str | None, tags: Mapping[str, str] | None) -> Iterator[MlflowRunTracker]:
    tracking = settings.tracking
    assert isinstance(tracking, MlflowTracking)
    uri = tracking_uri(tracking)
    check_store(uri)
    client = MlflowClient(uri)
    heartbeat.close_dead_runs_once(client, tracking, uri)
    params = run_params(settings)
    run = resumed_run(client, tracking, settings.resume, params, uri) if settings.resume else None
    if run and settings.resume == RESUME_LAST:
        print(f"resume=last: continuing run {run.info.run_id} ({run.info.run_name}, {run.info.status})", flush=True)
    with process_tracking_uri(uri):
        # The caller's tags (a sweep trial's number), the liveness tags and the output folder from the start: a run
        # killed before its config is recorded is still found by them, and closing it finds its checkpoints.
        run_id = run.info.run_id if run else create_run(
            client, tracking, uri, parent_run_id=parent_run_id,
            tags={**(tags or {}), **heartbeat.liveness_tags(tracking.stale_after),
                  heartbeat.OUTPUT_DIR_TAG: str(output_dir)},
        )
        if tracking.system_metrics and MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL.get() is None:
            mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        # Its heartbeat first: a resumed run RUNNING again with its old, stale stamp would look dead to other starts.
        tracker = MlflowRunTracker(client, run_id, tracking, liveness_recorded=run is None)
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None,
                         log_system_metrics=tracking.system_metrics)
        try:
            if run:
                _log(client, run_id, params=_new_params(run, params),
                     tags={**(tags or {}), "resume_overrides": " ".join(overrides), "output_dir": str(output_dir)})
            else:
                provenance = {**run_tags(settings, overrides, output_dir), **(tags or {})}
                _record_config(client, run_id, settings, params, provenance, overrides)
            yield tracker
        except TrainingStopped as stopped:
            _close(tracker, output_dir, KILLED, {"stopped": str(stopped) or "stopped"})
            raise
        except Exception as error:
            _close(tracker, output_dir, FAILED, {"error": one_line(error)[:ERROR_TAG_LENGTH]}, traceback.format_exc())
            raise
        except BaseException:  # KeyboardInterrupt (Ctrl-C, or SIGTERM as the CLI maps it), SystemExit
            _close(tracker, output_dir, KILLED, {})
            raise
        else:
            _close(tracker, output_dir, FINISHED, {})


@contextmanager
def process_tracking_uri(uri: str) -> Iterator[None]:
    """The fluent API (log_model, the active run) reads a process-wide URI, which MLflow also
    exports as MLFLOW_TRACKING_URI; put both back afterwards so the next run or a subprocess is not redirected."""
    previous = os.environ.get(MLFLOW_TRACKING_URI.name)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None clears both; MLflow annotates str | Path


def _record_config(client: MlflowClient, run_id: str, settings: Settings, params: dict[str, object],
                   tags: dict[str, str], overrides: Sequence[str]) -> None:
    _log(client, run_id, params=params, tags={**tags, MLFLOW_RUN_NAME: _run_name(settings, run_id)})
    with tempfile.TemporaryDirectory() as folder:  # both files in one upload
        config = yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)
        (Path(folder) / "config.yaml").write_text(redact(config))
        (Path(folder) / "overrides.yaml").write_text(redact(yaml.safe_dump(list(overrides))))
        client.log_artifacts(run_id, folder, "config")


def _run_name(settings: Settings, run_id: str) -> str:
    tracking = settings.tracking
    assert isinstance(tracking, MlflowTracking)
    optimizer = settings.optimizer
    return tracking.run_name or f"{settings.model.name}-{optimizer.name}-lr{optimizer.learning_rate:g}-{run_id[:6]}"


def _new_params(run: Run, params: dict[str, object]) -> dict[str, object]:
    """MLflow params are write-once: a resumed run logs only keys it does not have yet."""
    return {key: value for key, value in params.items() if key not in run.data.params}


def _log(client: MlflowClient, run_id: str, *, params: Mapping[str, object], tags: Mapping[str, str]) -> None:
    """Params and tags, passwords masked; MlflowClient.log_batch splits them into requests MLflow's limits allow."""
    client.log_batch(run_id, params=[Param(key, redact(str(value))) for key, value in params.items()],
                     tags=[RunTag(key, redact(str(value))) for key, value in tags.items()])


def log_console_output(client: MlflowClient, run_id: str, output_dir: Path) -> None:
    """The run's console output (pipeline.run tees it into its folder's *.log), passwords masked."""
    for log in output_dir.glob("*.log"):
        client.log_text(run_id, redact(log.read_text(errors="replace")), log.name)


def _close(tracker: MlflowRunTracker, output_dir: Path, status: str, tags: dict[str, str],
           error_text: str | None = None) -> None:
    """Record the checkpoints, the TensorBoard logs (closed by then) and how the run ended; the status is set even
    if recording fails."""
    client, run_id = tracker.client, tracker.run_id
    try:
        tracker.close()
        checkpoint_files.settle(output_dir / checkpoint_files.FOLDER)  # a save a failure cut short: not uploaded
        for folder in (checkpoint_files.FOLDER, TENSORBOARD_FOLDER):
            saved = output_dir / folder
            if saved.is_dir() and any(saved.iterdir()):
                client.log_artifacts(run_id, str(saved), folder)
        log_console_output(client, run_id, output_dir)
        if error_text:
            client.log_text(run_id, redact(error_text), "error.txt")
        if tags:
            _log(client, run_id, params={}, tags=tags)
    finally:
        mlflow.end_run(status)

