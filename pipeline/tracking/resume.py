"""Which run `resume` continues: the run it names by id, or with `resume=last` the most recent KILLED, FAILED or dead
run of the experiment that has the command's config and a checkpoint. No Keras: `jobs.check_jobs` finds it before
TensorFlow is imported (a resume that cannot work is one line, nothing started), and the run's start again."""

from __future__ import annotations

import time

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from pipeline import checkpoint_files
from pipeline.compose import flatten
from pipeline.config import RESUME_LAST, MlflowTracking, Settings
from pipeline.errors import PipelineError
from pipeline.tracking import heartbeat
from pipeline.tracking.runs import FAILED, FINISHED, KILLED, RUNNING
from pipeline.tracking.store import tracking_uri

NOT_PARAMS = ("resume", "output_dir")  # where and how this process runs, not what the run is
# A resumed run may differ from the original only in these (longer training, another machine, tracking options).
# Settings that change how fast or where a run trains, not what it learns.
RESUMABLE_CHANGES = (
    "trainer.epochs", "trainer.fine_tune.epochs", "trainer.verbose", "trainer.steps_per_execution",
    "trainer.jit_compile", "device.", "tracking.",
)
RESUMABLE_STATUSES = (KILLED, FAILED)


def run_params(settings: Settings) -> dict[str, object]:
    """The settings a run records as its MLflow params, and a resume compares."""
    return {key: value for key, value in flatten(settings).items() if key not in NOT_PARAMS}


def check_resumable(settings: Settings) -> None:
    """settings.resume names a run this config can continue (PipelineError otherwise): the pre-flight's check. Dead
    runs are closed first, as the run's start would do a moment later (resume=last continues them too)."""
    tracking = settings.tracking
    if not settings.resume or not isinstance(tracking, MlflowTracking):
        return
    uri = tracking_uri(tracking)
    client = MlflowClient(uri)
    heartbeat.close_dead_runs_once(client, tracking, uri)
    resumed_run(client, tracking, settings.resume, run_params(settings), uri)


def resumed_run(client: MlflowClient, tracking: MlflowTracking, resume: str, params: dict[str, object],
                uri: str) -> Run:
    """The run `resume` names (an id, or `last`), checked to be continued with this config."""
    if resume == RESUME_LAST:
        return last_resumable(client, tracking, params)
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
    mismatch = config_mismatch(run, params)
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


def last_resumable(client: MlflowClient, tracking: MlflowTracking, params: dict[str, object]) -> Run:
    """The most recently started KILLED or FAILED run of the experiment (dead ones are closed first) that has
    this config and a checkpoint to continue from. Parent runs (no params) never match; nor does a sweep trial,
    unless its sampled values are the command's."""
    experiment = client.get_experiment_by_name(tracking.experiment)
    candidates = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"],
        filter_string=f"attributes.status != '{RUNNING}' and attributes.status != '{FINISHED}'")  # no IN for status
    for run in candidates:
        matches = run.info.status in RESUMABLE_STATUSES and run.data.params and config_mismatch(run, params) is None
        if matches and client.list_artifacts(run.info.run_id, checkpoint_files.FOLDER):
            return run
    raise PipelineError(f"resume=last: no KILLED, FAILED or dead run of experiment {tracking.experiment} has this "
                        "config and a checkpoint; run it without resume, or give the run's own overrides")


def config_mismatch(run: Run, params: dict[str, object]) -> str | None:
    """The first setting this config changes in the run beyond RESUMABLE_CHANGES, as `key=new but the run has old`."""
    for key, value in params.items():
        recorded = run.data.params.get(key)
        if recorded is not None and recorded != str(value) and not key.startswith(RESUMABLE_CHANGES):
            return f"{key}={value} but the run has {key}={recorded}"
    return None
