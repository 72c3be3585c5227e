"""`python -m pipeline.ui --tensorboard [run id | sweep study | experiment]`: the chosen runs' TensorBoard logs
(tracking.tensorboard's artifacts), fetched from the store into one folder, one subfolder per run named as in
MLflow; with several runs, also TensorBoard's HParams view of them (the params that differ, their test metrics).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from pipeline.config import MlflowTracking
from pipeline.errors import PipelineError
from pipeline.tracking import TENSORBOARD_FOLDER as FOLDER
from pipeline.tracking.runs import STUDY_TAG

TEST_METRICS = ("test_accuracy", "test_loss", "test_f1_macro")  # in the HParams table, as the jobs' table has them
FINAL_VALIDATION = ("epoch_accuracy", "epoch_loss")  # the last epoch's, from the logs' validation folder
_NOT_IN_FOLDER_NAMES = re.compile(r"[^\w.\-=]")
_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Selection:
    description: str  # "the runs of multirun-20260101-120000", "experiment kerastrack", ...
    runs: list[Run]


def select_runs(client: MlflowClient, tracking: MlflowTracking, uri: str, target: str | None) -> Selection:
    """The runs `target` names: a run id (a multirun's or sweep's parent: its children), a sweep's study name (its
    trials), an experiment's name; none: tracking.experiment. One line (PipelineError) for a name that is none."""
    if target is None:
        target = tracking.experiment
    elif _RUN_ID.fullmatch(target):
        try:
            run = client.get_run(target)
        except MlflowException:
            raise PipelineError(f"--tensorboard {target}: no such run in {uri}") from None
        children = _search(client, [run.info.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{target}'")
        return Selection(f"the runs of {run.info.run_name}" if children else f"run {run.info.run_name}",
                         children or [run])
    experiments = client.search_experiments()
    trials = _search(client, [e.experiment_id for e in experiments], f"tags.`{STUDY_TAG}` = '{_quoted(target)}'")
    trials = [run for run in trials if MLFLOW_PARENT_RUN_ID in run.data.tags]  # not the study's parent run
    if trials:
        return Selection(f"the trials of sweep study {target}", trials)
    experiment = next((e for e in experiments if e.name == target), None)
    if experiment is None:
        raise PipelineError(f"--tensorboard {target}: no run id, sweep study or experiment of that name in {uri}")
    return Selection(f"experiment {target}", _search(client, [experiment.experiment_id], ""))


def _search(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    runs: list[Run] = []
    page_token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, order_by=["attributes.start_time ASC"],
                                  page_token=page_token)
        runs += page
        page_token = page.token
        if not page_token:
            return runs


def _quoted(value: str) -> str:
    return value.replace("'", "\\'")


def fetch_logs(client: MlflowClient, selection: Selection, into: Path) -> list[str]:
    """Each chosen run's logs in `into`/<run name>/ (train/, validation/); with several runs, their HParams
    there too. The folders' names, in the runs' order; PipelineError if no chosen run has logs."""
    logged = [run for run in selection.runs if client.list_artifacts(run.info.run_id, FOLDER)]
    if not logged:
        raise PipelineError(f"--tensorboard: no TensorBoard logs in {selection.description} "
                            f"({len(selection.runs)} run(s)); runs record them with tracking.tensorboard=true")
    names = _folder_names(logged)
    for run, name in zip(logged, names):
        fetched = Path(client.download_artifacts(run.info.run_id, FOLDER, str(into / ".fetching")))
        shutil.move(fetched, into / name)
    shutil.rmtree(into / ".fetching", ignore_errors=True)
    if len(logged) > 1:
        _write_hparams(logged, [into / name for name in names])
    return names


def _folder_names(runs: list[Run]) -> list[str]:
    """The run names as MLflow shows them, made folder names; a name two runs share gets the run id's start."""
    names = [_NOT_IN_FOLDER_NAMES.sub("_", run.info.run_name or run.info.run_id) for run in runs]
    return [f"{name}-{run.info.run_id[:6]}" if names.count(name) > 1 else name for name, run in zip(names, runs)]


def _write_hparams(runs: list[Run], folders: list[Path]) -> None:
    """The HParams view: the params whose values differ between the runs, and the test metrics (written beside
    each run's logs; its last validation epoch is read from them)."""
    import tensorflow as tf  # the TensorBoard summaries' writer; after the runs were found (TensorFlow's start-up)
    from tensorboard.plugins.hparams import api as hp

    keys = sorted({key for run in runs for key in run.data.params}
                  - {key for key in runs[0].data.params
                     if all(run.data.params.get(key) == runs[0].data.params[key] for run in runs)})
    config = [hp.HParam(key) for key in keys]
    metrics = [*(hp.Metric(name, display_name=name) for name in TEST_METRICS),
               *(hp.Metric(tag, group="validation", display_name=f"val_{tag.removeprefix('epoch_')}",
                           dataset_type=hp.Metric.VALIDATION) for tag in FINAL_VALIDATION)]
    for run, folder in zip(runs, folders):
        with tf.summary.create_file_writer(str(folder)).as_default():
            hp.hparams_config(hparams=config, metrics=metrics)
            hp.hparams({key: _value(run.data.params[key]) for key in keys if key in run.data.params},
                       trial_id=folder.name,
                       start_time_secs=run.info.start_time / 1000)
            for name in TEST_METRICS:  # one value per run, at step 0: the HParams view reads the last
                if name in run.data.metrics:
                    tf.summary.scalar(name, run.data.metrics[name], step=0)


def _value(param: str) -> float | str:
    """A param's value as HParams sorts it: a number when it reads as one (MLflow keeps every param as text)."""
    try:
        return float(param)
    except ValueError:
        return param
