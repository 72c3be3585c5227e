"""`tracking.tensorboard`: TensorBoard logs of a run, written with TensorBoard's own event-file writer.

Both trainers drive Keras callbacks (pipeline.trainer), so one callback serves `fit` and the custom loop alike: the
epoch logs it writes are the ones MLflow records (tracking.epochs), learning rate and epoch time included, under the
tags Keras's TensorBoard callback gives them. The summaries are protos built from the Python floats Keras hands
callbacks (TensorBoard's `*_pb` functions), and the writer's own thread does the file I/O, so an epoch runs no
TensorFlow op for its scalars. The logs go to the run's folder (`tensorboard/train`, `tensorboard/validation`) and,
when the run closes, to the MLflow run as artifacts under the same name (tensorboard_runs.FOLDER).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import keras
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.graph.metadata import PLUGIN_NAME_KERAS_MODEL
from tensorboard.plugins.histogram.summary import histogram_pb
from tensorboard.plugins.scalar.summary import scalar_pb
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util.tensor_util import make_tensor_proto

from pipeline.config import MlflowTracking

TRAIN, VALIDATION = "train", "validation"  # the log folder's subfolders, as Keras's callback names them
GRAPH_TAG = "keras"  # Keras's keras_model_summary tag, which TensorBoard's graph dashboard lists


class RunTensorBoard(keras.callbacks.Callback):
    """A run's TensorBoard logs: per epoch (counted from 1, as MLflow's steps are) the epoch logs' scalars, train's
    as `epoch_<name>` in train/ and validation's `val_<name>` as `epoch_<name>` in validation/; the model's graph;
    optionally weight histograms. The event files stay open across a run's fit calls (a resumed epoch, fine-tuning
    phases), are flushed at each train end and closed by `close`, however training ended."""

    def __init__(self, log_dir: Path, settings: MlflowTracking):
        super().__init__()
        self.log_dir = log_dir
        self.histograms = settings.tensorboard_histograms
        every = settings.tensorboard_update_freq
        self._calls = None if every == "epoch" else CallScalars(self, every)
        self._writers: dict[str, EventFileWriter] = {}
        self._graph_of: keras.Model | None = None

    def callbacks(self) -> list[keras.callbacks.Callback]:
        """This one, and with tracking.tensorboard_update_freq=N the one that writes every N compiled calls."""
        return [self] if self._calls is None else [self, self._calls]

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        if model is not self._graph_of:
            self._graph_of = model
            graph = _keras_graph(model)
            if graph is not None:
                self.write(TRAIN, 0, graph)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        train = [scalar_pb(f"epoch_{name}", value) for name, value in logs.items() if not name.startswith("val_")]
        if self.histograms:
            train += [histogram_pb(f"{weight.path.replace(':', '_')}/histogram", weight.numpy())
                      for layer in self.model.layers for weight in layer.weights]
        self.write(TRAIN, epoch + 1, *train)
        validation = [scalar_pb(f"epoch_{name.removeprefix('val_')}", value)
                      for name, value in logs.items() if name.startswith("val_")]
        if validation:
            self.write(VALIDATION, epoch + 1, *validation)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for writer in self._writers.values():
            writer.flush()

    def write(self, subfolder: str, step: int, *summaries: Summary) -> None:
        """One event at `step` in `subfolder`'s event file (created at its first event) holding `summaries`."""
        if subfolder not in self._writers:
            self._writers[subfolder] = EventFileWriter(str(self.log_dir / subfolder))
        values = Summary(value=[value for summary in summaries for value in summary.value])
        self._writers[subfolder].add_event(Event(wall_time=time.time(), step=step, summary=values))

    def close(self) -> None:
        """The event files complete and closed, however training ended (an error, Ctrl-C: no on_train_end)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class CallScalars(keras.callbacks.Callback):
    """The training logs as `batch_<name>` every `every` compiled calls (steps counting the run's calls, as Keras's
    update_freq does). Only when asked for: a batch-end hook makes Keras turn every call's logs into floats, a
    device sync per call."""

    def __init__(self, logs: RunTensorBoard, every: int):
        super().__init__()
        self.logs, self.every, self.calls = logs, every, 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.calls += 1
        if logs and self.calls % self.every == 0:
            self.logs.write(TRAIN, self.calls, *(scalar_pb(f"batch_{name}", value) for name, value in logs.items()))


def _keras_graph(model: keras.Model) -> Summary | None:
    """The model's JSON as Keras's keras_model_summary writes it (TensorBoard's conceptual graph); None for a
    subclassed model, which has no layer list to draw (Keras's callback skips those too) or no config at all."""
    try:
        config = model.to_json()
    except NotImplementedError:  # a subclassed model with arguments Keras cannot serialise
        return None
    if "layers" not in json.loads(config).get("config", {}):
        return None
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME_KERAS_MODEL,
                                                                      content=b"1"))
    return Summary(value=[Summary.Value(tag=GRAPH_TAG, metadata=metadata, tensor=make_tensor_proto(config))])

