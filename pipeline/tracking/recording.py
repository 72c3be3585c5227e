"""A tracked run's MLflow calls, made on one thread of their own in the order the run makes them.

MLflow takes seconds to import and to open its store, and TensorFlow leaves Python's lock free while it trains, so
the run opens on its recording thread (MLflow's import, the store, the run and its config) as training begins (after
the steps-per-call probe, which it would slow); the calls made before wait behind it, the epochs' metrics too, and
what logging the model needs at the end loads there meanwhile.
The core calls `RecordedRun` as any `RunTracker`: it waits only where it needs an answer (the run's id, a resumed
run's checkpoints, the logged model's id) and at the end, when the run closes on the thread it was opened on (the
fluent API's active run, which `log_model` uses, is the thread's). A run that could not open stops training at the
next epoch's end with that error.
"""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import keras

from pipeline.config import MlflowTracking
from pipeline.tracking.epochs import EpochLogger
from pipeline.tracking.tracker import RunTracker

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import Dataset
    from pipeline.tracking.mlflow_tracker import MlflowRunTracker

# What `mlflow.tensorflow.log_model` imports on its first call.
FIRST_USE_MODULE = "mlflow.pyfunc"


class RecordedRun(RunTracker):
    """`open_run` (called on the recording thread) gives the run's lifecycle: entered there to open the run, exited
    there by `finish` to close it as the run ended. The TensorBoard logs are written here, by the training loop."""

    records = True

    def __init__(self, open_run: Callable[[], AbstractContextManager[MlflowRunTracker]], settings: MlflowTracking,
                 tensorboard_dir: Path):
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-run")
        self._lifecycle: AbstractContextManager[MlflowRunTracker] | None = None
        self._may_open = threading.Event()
        self._opened = self._calls.submit(self._open, open_run)
        self._later: list[Future[Any]] = []
        if settings.log_model:
            self._later.append(self._calls.submit(importlib.import_module, FIRST_USE_MODULE))
        self.tensorboard = None
        if settings.tensorboard:
            from pipeline.tracking.tensorboard import RunTensorBoard  # TensorBoard's modules: only for runs with logs

            self.tensorboard = RunTensorBoard(tensorboard_dir, settings)

    def open(self) -> None:
        """Let the run open now (at the latest: the first answer waited for, or the end)."""
        self._may_open.set()

    def _open(self, open_run: Callable[[], AbstractContextManager[MlflowRunTracker]]) -> MlflowRunTracker:
        self._may_open.wait()
        self._lifecycle = open_run()
        return self._lifecycle.__enter__()

    @property
    def run_id(self) -> str:  # type: ignore[override]  # the base class's is a plain attribute
        """Waits for the run to open."""
        self.open()
        return self._opened.result().run_id

    def epoch_callbacks(self) -> list[keras.callbacks.Callback]:
        return [_OpenAsTrainingBegins(self), EpochLogger(self._log_epoch),
                *(self.tensorboard.callbacks() if self.tensorboard else [])]

    def _log_epoch(self, metrics: dict[str, float], step: int) -> None:
        if self._opened.done():
            self._opened.result()  # the run could not open: training stops with why
        self._call_later("log_epoch", metrics, step)

    def log_datasets(self, data: Dataset) -> None:
        self._call_later("log_datasets", data)

    def log_training_examples(self, images: np.ndarray) -> None:
        self._call_later("log_training_examples", images)

    def log_tags(self, tags: dict[str, str]) -> None:
        self._call_later("log_tags", tags)

    def log_missing_epochs(self, history: dict[str, list[float]]) -> None:
        self._call_later("log_missing_epochs", history)

    def fetch_checkpoints(self, into: Path) -> bool:
        return self._call_now("fetch_checkpoints", into)

    def log_results(self, **results: Any) -> str | None:  # RunTracker's keywords, passed on
        return self._call_now("log_results", **results)

    def finish(self, error: BaseException | None) -> None:
        """Close the run on its thread as it ended: with `error` (the caller raises it), or, when it ran to its end,
        with the first error of a call made in the background (raised here); after every call made before."""
        background = None
        self.open()
        try:
            if self.tensorboard is not None:
                self.tensorboard.close()  # complete before the run uploads the folder
            opening = self._opened.exception()
            if opening is not None:  # a run that never opened has nothing to close
                if error is None:
                    raise opening
                return
            if error is None:
                background = next((call.exception() for call in self._later if call.exception() is not None), None)
            ended = error or background
            exit_run = self._lifecycle.__exit__  # type: ignore[union-attr]  # set once the run opened
            self._calls.submit(exit_run, type(ended) if ended else None, ended,
                               ended.__traceback__ if ended else None).result()
        finally:
            self._calls.shutdown()
        if background is not None:
            raise background

    def _call_later(self, method: str, *args: Any) -> None:
        self._later.append(self._calls.submit(self._call, method, args, {}))

    def _call_now(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.open()
        return self._calls.submit(self._call, method, args, kwargs).result()

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return getattr(self._opened.result(), method)(*args, **kwargs)


class _OpenAsTrainingBegins(keras.callbacks.Callback):
    def __init__(self, run: RecordedRun):
        super().__init__()
        self.run = run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.run.open()
