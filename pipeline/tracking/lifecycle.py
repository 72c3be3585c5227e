"""One MLflow run from start to its final status: create or re-open (resume=<run id> or resume=last), record the
config, keep a heartbeat, close as it ended. A process's first run first closes the experiment's dead runs
(tracking.heartbeat)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import Param, Run, RunTag
from mlflow.environment_variables import MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, MLFLOW_TRACKING_URI
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from pipeline import checkpoints
from pipeline.compose import flatten
from pipeline.config import RESUME_LAST, MlflowTracking, Settings
from pipeline.credentials import redact
from pipeline.errors import PipelineError, TrainingStopped, one_line
from pipeline.tracking import heartbeat
from pipeline.tracking.mlflow_tracker import MlflowRunTracker
from pipeline.tracking.provenance import run_tags
from pipeline.tracking.runs import FAILED, FINISHED, KILLED, RUNNING, create_run
from pipeline.tracking.store import check_store, tracking_uri

# The stores and experiments whose dead runs this process has closed (a multirun's or a sweep worker's later runs
# search no more).
_swept_for_dead_runs: set[tuple[str, str]] = set()
NOT_PARAMS = ("resume", "output_dir")  # where and how this process runs, not what the run is
# A resumed run may differ from the original only in these (longer training, another machine, tracking options).
# Settings that change how fast or where a run trains, not what it learns.
RESUMABLE_CHANGES = (
    "trainer.epochs", "trainer.verbose", "trainer.steps_per_execution", "trainer.jit_compile", "device.", "tracking.",
)
RESUMABLE_STATUSES = (KILLED, FAILED)
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
    if (uri, tracking.experiment) not in _swept_for_dead_runs:  # once per process: a start's job, not each run's
        heartbeat.close_dead_runs(client, tracking)
        _swept_for_dead_runs.add((uri, tracking.experiment))
    params = {key: value for key, value in flatten(settings).items() if key not in NOT_PARAMS}
    run = _resumed_run(client, tracking, settings.resume, params, uri) if settings.resume else None
    with process_tracking_uri(uri):
        # The caller's tags (a sweep trial's number) and the liveness tags from the start: a run stopped before its
        # config is recorded is still found by them.
        run_id = run.info.run_id if run else create_run(
            client, tracking, uri, parent_run_id=parent_run_id,
            tags={**(tags or {}), **heartbeat.liveness_tags(tracking.stale_after)},
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


def _resumed_run(client: MlflowClient, tracking: MlflowTracking, resume: str, params: dict[str, object],
                 uri: str) -> Run:
    """The run `resume` names (an id, or `last`), checked to be continued with this config; start_run re-opens it."""
    if resume == RESUME_LAST:
        return _last_resumable(client, tracking, params)
    try:
        run = client.get_run(resume)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST) and "not found" not in str(error).lower():
            raise
        raise PipelineError(f"resume={resume}: no such run in {uri}") from None
    if run.info.status == RUNNING:
        run = _closed_if_dead(client, run, tracking)
    status = run.info.status
    if status not in RESUMABLE_STATUSES:
        raise PipelineError(f"resume={resume}: the run is {status}; only a KILLED or FAILED run can be resumed")
    mismatch = _config_mismatch(run, params)
    if mismatch:
        original = run.data.tags.get("overrides", "")
        raise PipelineError(f"resume={resume}: {mismatch}; resume with the run's own overrides: {original or '(none)'}")
    return run


def _closed_if_dead(client: MlflowClient, run: Run, tracking: MlflowTracking) -> Run:
    """A RUNNING run asked for by id: closed KILLED now if its heartbeat is stale or its process is gone from this
    machine; refused in one line while it still runs."""
    now = time.time()
    if heartbeat.is_dead(run, tracking.stale_after, now):
        reason = heartbeat.stale_reason(run, now)
    elif heartbeat.process_is_gone(run):
        reason = f"its process is gone ({heartbeat.whereabouts(run, now)})"
    else:
        raise PipelineError(f"resume={run.info.run_id}: the run is still running {heartbeat.whereabouts(run, now)}; "
                            "stop it first (Ctrl-C), or resume it once its heartbeat is older than "
                            f"tracking.stale_after={tracking.stale_after:g}s")
    heartbeat.close_dead_run(client, run, reason)
    return client.get_run(run.info.run_id)


def _last_resumable(client: MlflowClient, tracking: MlflowTracking, params: dict[str, object]) -> Run:
    """The most recently started KILLED or FAILED run of the experiment (dead ones were closed at start) that has
    this config and a checkpoint to continue from. Parent runs (no params) never match; nor does a sweep trial,
    unless its sampled values are the command's."""
    experiment = client.get_experiment_by_name(tracking.experiment)
    candidates = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"],
        filter_string=f"attributes.status != '{RUNNING}' and attributes.status != '{FINISHED}'")  # no IN for status
    for run in candidates:
        matches = run.info.status in RESUMABLE_STATUSES and run.data.params and _config_mismatch(run, params) is None
        if matches and client.list_artifacts(run.info.run_id, checkpoints.FOLDER):
            print(f"resume=last: continuing run {run.info.run_id} ({run.info.run_name}, {run.info.status})", flush=True)
            return run
    raise PipelineError(f"resume=last: no KILLED, FAILED or dead run of experiment {tracking.experiment} has this "
                        "config and a checkpoint; run it without resume, or give the run's own overrides")


def _config_mismatch(run: Run, params: dict[str, object]) -> str | None:
    """The first setting this config changes in the run beyond RESUMABLE_CHANGES, as `key=new but the run has old`."""
    for key, value in params.items():
        recorded = run.data.params.get(key)
        if recorded is not None and recorded != str(value) and not key.startswith(RESUMABLE_CHANGES):
            return f"{key}={value} but the run has {key}={recorded}"
    return None


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
    """Record the last metrics, the checkpoints and how the run ended; the status is set even if recording fails."""
    client, run_id = tracker.client, tracker.run_id
    try:
        tracker.close()
        saved = output_dir / checkpoints.FOLDER
        if saved.is_dir() and any(saved.iterdir()):
            client.log_artifacts(run_id, str(saved), checkpoints.FOLDER)
        log_console_output(client, run_id, output_dir)
        if error_text:
            client.log_text(run_id, redact(error_text), "error.txt")
        if tags:
            _log(client, run_id, params={}, tags=tags)
    finally:
        mlflow.end_run(status)

