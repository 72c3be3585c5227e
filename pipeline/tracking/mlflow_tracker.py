"""The MLflow side of `RunTracker`: records into one open run (the active run, which `log_model` needs). A tracked
run calls it on its recording thread (pipeline.tracking.recording), the thread the run was opened on."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException

from pipeline import checkpoint_files
from pipeline.config import MlflowTracking
from pipeline.data import Dataset
from pipeline.tracking.datasets import SKIPPED_IMAGES, log_dataset_inputs
from pipeline.tracking.epochs import metric_name
from pipeline.tracking.heartbeat import Heartbeat
from pipeline.tracking.logged_models import log_keras_model
from pipeline.tracking.reports import TRAINING_EXAMPLES, image_grid, write_model_summary, write_reports
from pipeline.tracking.tracker import RunTracker

METRICS_PER_REQUEST = 1000  # the most metrics MLflow's log_batch takes at once


class CheckpointSource(RunTracker):
    """A multi-worker run's other workers: they record nothing (the chief does) but resume from the same run."""

    def __init__(self, uri: str, run_id: str | None):
        self.uri, self.source_run_id = uri, run_id

    def fetch_checkpoints(self, into: Path) -> bool:
        # The store is opened only here: a fresh SQLite store is the chief's to create.
        return self.source_run_id is not None and download_checkpoints(MlflowClient(self.uri), self.source_run_id, into)


def download_checkpoints(client: MlflowClient, run_id: str, into: Path) -> bool:
    if not client.list_artifacts(run_id, checkpoint_files.FOLDER):
        return False
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        fetched = Path(client.download_artifacts(run_id, checkpoint_files.FOLDER, scratch))
        # The run's save and this folder's own, if a killed run left one here: each one checkpoint before the merge.
        checkpoint_files.settle(fetched)
        checkpoint_files.settle(into)
        for file in fetched.iterdir():
            shutil.move(file, into / file.name)
    return True


class MlflowRunTracker(RunTracker):
    """Records into one open run; a heartbeat says the run is alive until `close`."""

    run_id: str  # always a run, unlike the base class's
    records = True

    def __init__(self, client: MlflowClient, run_id: str, settings: MlflowTracking, *, liveness_recorded: bool):
        """`liveness_recorded`: the run was created with heartbeat.liveness_tags (a resumed run was not)."""
        self.client = client
        self.run_id = run_id
        self.settings = settings
        self._metric_failures: list[str] = []
        self.heartbeat = Heartbeat(client, run_id, settings.stale_after).start(recorded=liveness_recorded)

    def log_epoch(self, metrics: dict[str, float], step: int) -> None:
        """One epoch's metrics in one request; a store that fails is reported at `close`, not raised: training
        goes on."""
        now = int(time.time() * 1000)
        try:
            self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step)
                                                        for name, value in metrics.items()])
        except Exception as error:  # noqa: BLE001 - a store hiccup must not stop training
            self._metric_failures.append(" ".join(str(error).split())[:200])

    def log_missing_epochs(self, history: dict[str, list[float]]) -> None:
        now = int(time.time() * 1000)
        missing = []
        for key, values in history.items():
            name = metric_name(key)
            recorded = {point.step for point in self.client.get_metric_history(self.run_id, name)}
            missing += [Metric(name, value, now, step) for step, value in enumerate(values, 1) if step not in recorded]
        for start in range(0, len(missing), METRICS_PER_REQUEST):
            self.client.log_batch(self.run_id, metrics=missing[start:start + METRICS_PER_REQUEST])

    def log_datasets(self, data: Dataset) -> None:
        """Lineage by name and digest (see tracking.datasets), and the list of images left out as bad."""
        try:
            log_dataset_inputs(data)
        except MlflowException:
            # Parallel workers logging the same dataset race on MLflow's check-then-insert (a UNIQUE
            # violation for the loser); on the second try the dataset exists and is only linked.
            log_dataset_inputs(data)
        if data.image_files and data.image_files.skipped:
            self.client.log_text(self.run_id, "\n".join(data.image_files.skipped) + "\n", SKIPPED_IMAGES)

    def log_training_examples(self, images: np.ndarray) -> None:
        """A grid of (augmented) training images, as the model sees them."""
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / Path(TRAINING_EXAMPLES).name
            image_grid(images).savefig(path, dpi=80)
            self.client.log_artifact(self.run_id, str(path), str(Path(TRAINING_EXAMPLES).parent))

    def log_tags(self, tags: dict[str, str]) -> None:
        """Tags, not params: a resumed run may resolve a value differently (params cannot change)."""
        self.client.log_batch(self.run_id, tags=[RunTag(key, value) for key, value in tags.items()])

    def fetch_checkpoints(self, into: Path) -> bool:
        return download_checkpoints(self.client, self.run_id, into)

    def log_results(self, *, model: keras.Model, data: Dataset, history: dict[str, list[float]],
                    test_metrics: dict[str, float], y_pred: np.ndarray, artifacts: bool = True) -> str | None:
        """Plots render on a thread while the model is logged; the test metrics link to the model; every
        report goes up in one artifact upload."""
        step = max((len(values) for values in history.values()), default=0)
        with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(max_workers=1) as pool:
            folder = Path(scratch)
            reports = pool.submit(write_reports, folder, data=data, history=history, y_pred=y_pred, plots=artifacts)
            model_id = None
            if artifacts and self.settings.log_model:
                model_id = log_keras_model(model, data, step=step, register_as=self.settings.register_as).model_id
            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step, model_id=model_id)
                                                        for name, value in test_metrics.items()])
            write_model_summary(folder, model)
            reports.result()
            self.client.log_artifacts(self.run_id, scratch)
        return model_id

    def close(self) -> None:
        """Called by the run's lifecycle before the final status."""
        self.heartbeat.stop()
        if self._metric_failures:
            print(f"warning: {len(self._metric_failures)} epoch(s) of metrics not recorded in MLflow: "
                  f"{self._metric_failures[0]}", file=sys.stderr)
