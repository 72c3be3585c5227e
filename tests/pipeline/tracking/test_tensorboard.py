"""tracking.tensorboard: both trainers write TensorBoard event files with MLflow's epoch values, logged to the run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.compose import compose_config, validate
from pipeline.data import load_data
from pipeline.errors import PipelineError
from tests.conftest import QUICK
from tests.mlflow_fixtures import new_store

EPOCHS = 2
TRAIN_TAGS = {"epoch_loss": "train_loss", "epoch_accuracy": "train_accuracy",
              "epoch_learning_rate": "learning_rate", "epoch_epoch_time": "epoch_time"}
VALIDATION_TAGS = {"epoch_loss": "val_loss", "epoch_accuracy": "val_accuracy"}


def event_values(folder: Path) -> dict[str, list[tuple[int, object]]]:
    """Every tag of the event files in `folder`: (step, value) per point (a histogram's value is its array)."""
    return {tag: points for tag, (_, points) in tagged_events(folder).items()}


def tagged_events(folder: Path) -> dict[str, tuple[str, list[tuple[int, object]]]]:
    """Every tag of the event files in `folder`: the TensorBoard plugin that reads it, and its (step, value) points."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: (events.SummaryMetadata(tag).plugin_data.plugin_name,
                  [(event.step, tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)])
            for tag in events.Tags()["tensors"]}


@pytest.fixture(scope="module", params=["fit", "custom"])
def tensorboard_run(request, tmp_path_factory, mlflow_template_db):
    from pipeline.core import RunOptions, run_pipeline

    folder = tmp_path_factory.mktemp(f"tensorboard-{request.param}")
    store = new_store(folder, mlflow_template_db)
    # tracking.tensorboard: its default, true
    overrides = [*QUICK, f"trainer.epochs={EPOCHS}", f"trainer={request.param}", store.override,
                 f"output_dir={folder / 'out'}", "tracking.log_model=false", "tracking.system_metrics=false",
                 "tracking.tensorboard_histograms=true",
                 "tracking.tensorboard_update_freq=1", "trainer.steps_per_execution=4"]
    result = run_pipeline(validate(compose_config(overrides)), RunOptions(overrides=overrides))
    return store, result


def test_the_event_files_hold_mlflows_epoch_values_for_both_trainers(tensorboard_run):
    store, result = tensorboard_run
    client = store.client()
    logs = result.output_dir / "tensorboard"
    for subfolder, tags in (("train", TRAIN_TAGS), ("validation", VALIDATION_TAGS)):
        written = event_values(logs / subfolder)
        for tag, metric in tags.items():
            recorded = [(point.step, point.value) for point in client.get_metric_history(result.run_id, metric)]
            assert len(recorded) == EPOCHS
            assert [step for step, _ in written[tag]] == [step for step, _ in recorded], tag
            # TensorBoard keeps float32, MLflow the Python float
            assert [float(value) for _, value in written[tag]] == pytest.approx([v for _, v in recorded]), tag


def test_the_graph_histograms_and_per_call_scalars_are_written(tensorboard_run):
    from tensorboard.plugins.graph import keras_util

    _, result = tensorboard_run
    tagged = tagged_events(result.output_dir / "tensorboard" / "train")
    written = {tag: points for tag, (_, points) in tagged.items()}
    # the model's JSON, where TensorBoard's graph dashboard looks for it (its conceptual graph), and drawable
    plugin, [(step, model_json)] = tagged["keras"]
    assert (plugin, step) == ("graph_keras_model", 0)
    graph = keras_util.keras_model_to_graph_def(json.loads(model_json.item()))
    assert "Dense" in {node.attr["keras_class"].s.decode() for node in graph.node}
    histograms = [tag for tag in written if tag.endswith("/histogram")]
    kernels = [tag for tag in histograms if "kernel" in tag]
    assert kernels and all([step for step, _ in written[tag]] == [1, 2] for tag in histograms)
    steps = math.ceil(len(load_data(result.settings.data).train) / result.settings.trainer.batch_size)
    assert len(written["batch_loss"]) == EPOCHS * math.ceil(steps / 4)  # a point per call of 4 steps


def test_the_logs_are_the_runs_artifacts(tensorboard_run, tmp_path):
    store, result = tensorboard_run
    client = store.client()
    assert sorted(artifact.path for artifact in client.list_artifacts(result.run_id, "tensorboard")) == [
        "tensorboard/train", "tensorboard/validation"]
    fetched = Path(client.download_artifacts(result.run_id, "tensorboard", str(tmp_path)))
    assert event_values(fetched / "validation").keys() >= VALIDATION_TAGS.keys()


def test_a_run_stopped_mid_training_still_logs_complete_event_files(mlflow_store, tmp_path):
    import keras

    from pipeline.core import RunOptions, run_pipeline

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # Ctrl-C: Keras calls no on_train_end

    overrides = [*QUICK, mlflow_store.override, f"output_dir={tmp_path / 'out'}", "tracking.log_model=false",
                 "tracking.system_metrics=false"]
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(validate(compose_config(overrides)), RunOptions(callbacks=[StopAfterFirstEpoch()]))
    run = mlflow_store.runs()[0]
    assert run.info.status == "KILLED"
    fetched = Path(mlflow_store.client().download_artifacts(run.info.run_id, "tensorboard", str(tmp_path)))
    train = event_values(fetched / "train")
    assert [step for step, _ in train["epoch_loss"]] == [1]
    assert [step for step, _ in event_values(fetched / "validation")["epoch_loss"]] == [1]
    # by default, neither histograms nor per-call scalars
    assert not [tag for tag in train if tag.endswith("/histogram") or tag.startswith("batch_")]


def test_tensorboard_false_writes_no_logs(finished):
    store, result, _ = finished
    assert not (result.output_dir / "tensorboard").exists()
    assert store.client().list_artifacts(result.run_id, "tensorboard") == []


@pytest.mark.parametrize("override, expected", [
    ("tracking.tensorboard=maybe", "tracking.tensorboard='maybe': input should be a valid boolean"),
    ("tracking.tensorboard_update_freq=0", "tracking.tensorboard_update_freq=0: allowed: epoch, or N >= 1"),
    ("tracking.tensorboard_update_freq=batch", "tracking.tensorboard_update_freq='batch': allowed: epoch, or N"),
])
def test_bad_tensorboard_values_are_one_line(override, expected):
    with pytest.raises(PipelineError) as error:
        validate(compose_config([override]))
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)
