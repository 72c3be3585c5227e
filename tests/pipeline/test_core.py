"""The whole pipeline as one function: sensible accuracy, reproducibility, the output folder, own models from
start to reload, the checkpoint that gets tested."""

import json
import sys

import keras
import numpy as np
import pytest

from pipeline.compose import validate
from pipeline.core import RunOptions, run_pipeline
from pipeline.data import load_data
from pipeline.errors import PipelineError, TrainingStopped
from pipeline.inputs import split_images


def test_default_config_reaches_sensible_accuracy(compose, tmp_path):
    settings = validate(compose("tracking=none", "trainer.verbose=0", f"output_dir={tmp_path}", quick=False))
    result = run_pipeline(settings)
    assert result.test_metrics["test_accuracy"] >= 0.95
    assert json.loads((tmp_path / "metrics.json").read_text()) == result.test_metrics
    assert set(result.test_metrics) >= {"test_loss", "test_accuracy", "test_f1_macro", "test_f1_0", "test_f1_9"}


def test_deterministic_runs_repeat_exactly_on_cpu(compose, tmp_path):
    overrides = ["tracking=none", "deterministic=true", "trainer=custom", "model.dropout=0.3"]
    first = run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'a'}")))
    second = run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'b'}")))
    assert first.history["loss"] == second.history["loss"]
    assert first.test_metrics == second.test_metrics


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise TrainingStopped("stopped after one epoch")


@pytest.mark.parametrize("model_overrides", [
    ["model=layers",
     "model.layers=[Flatten,{Dense: {units: 24, activation: relu}},{Dropout: {rate: '${model.dropout}'}}]"],
    ["model=python", "model.builder=my_models:build", "+model.kwargs.width=12"],
])
def test_own_models_train_log_resume_and_reload(compose, mlflow_store, tmp_path, monkeypatch, model_overrides):
    from pipeline.tracking.lifecycle import process_tracking_uri
    from pipeline.tracking.logged_models import load_logged_model

    (tmp_path / "my_models.py").write_text(USER_MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_models", raising=False)
    overrides = [*model_overrides, mlflow_store.override, "trainer.epochs=2"]
    with pytest.raises(TrainingStopped):
        run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'first'}")),
                     RunOptions(callbacks=[StopAfterFirstEpoch()]))
    (killed,) = mlflow_store.runs()
    assert killed.info.status == "KILLED"

    resumed = run_pipeline(validate(compose(*overrides, f"resume={killed.info.run_id}",
                                            f"output_dir={tmp_path / 'second'}")))

    assert resumed.run_id == killed.info.run_id and len(resumed.history["loss"]) == 2
    assert mlflow_store.client().get_run(resumed.run_id).info.status == "FINISHED"
    with process_tracking_uri(mlflow_store.uri):
        reloaded, _ = load_logged_model(f"models:/{resumed.model_id}")
    data = load_data(resumed.settings.data)
    accuracy = np.mean(np.argmax(reloaded.predict(split_images(data, "test"), verbose=0), axis=1) == data.test.labels)
    assert accuracy == pytest.approx(resumed.test_metrics["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize("first, then", [
    ("float32", "mixed_bfloat16"), ("mixed_bfloat16", "float32"), ("float32", "mixed_float16"),
])
def test_resume_continues_under_another_precision_and_logs_a_float32_model(compose, mlflow_store, tmp_path,
                                                                           first, then):
    import mlflow

    from pipeline.tracking.lifecycle import process_tracking_uri

    overrides = [mlflow_store.override, "trainer.epochs=2", "trainer.steps_per_execution=1"]
    try:
        with pytest.raises(TrainingStopped):
            run_pipeline(validate(compose(*overrides, f"device.precision={first}", f"output_dir={tmp_path / 'a'}")),
                         RunOptions(callbacks=[StopAfterFirstEpoch()]))
        (killed,) = mlflow_store.runs()
        resumed = run_pipeline(validate(compose(*overrides, f"device.precision={then}", f"resume={killed.info.run_id}",
                                                f"output_dir={tmp_path / 'b'}")))
        last = keras.models.load_model(tmp_path / "b" / "checkpoints" / "last.keras")  # under `then`, as saved
    finally:
        keras.mixed_precision.set_global_policy("float32")

    run = mlflow_store.client().get_run(resumed.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["precision"] == then
    assert last.layers[1].compute_dtype == then.removeprefix("mixed_")
    assert all(variable.dtype == "float32" for variable in last.weights)
    steps_per_epoch = -(-len(load_data(resumed.settings.data).train) // resumed.settings.trainer.batch_size)
    assert int(last.optimizer.iterations) == 2 * steps_per_epoch  # the optimizer's state went on, not afresh
    assert resumed.history["loss"][1] < resumed.history["loss"][0]
    # The logged model serves as any: float32 images in, float32 probabilities out.
    data = load_data(resumed.settings.data)
    with process_tracking_uri(mlflow_store.uri):
        probabilities = mlflow.pyfunc.load_model(f"models:/{resumed.model_id}").predict(split_images(data, "test"))
    assert probabilities.dtype == np.float32
    accuracy = np.mean(np.argmax(probabilities, axis=1) == data.test.labels)
    assert accuracy == pytest.approx(resumed.test_metrics["test_accuracy"], abs=1e-6)


USER_MODEL = '''
import keras


def build(input_shape, num_classes, width):
    return keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                             keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(num_classes, activation="softmax")])
'''


@pytest.mark.parametrize("evaluate", ["best", "last"])
def test_the_chosen_checkpoint_is_what_gets_tested(compose, tmp_path, evaluate):
    # Monitoring val_accuracy for its *minimum* makes the "best" checkpoint a worse model than the last one.
    result = run_pipeline(validate(compose("tracking=none", "trainer.epochs=4", "optimizer.learning_rate=0.003",
                                  "trainer.checkpoint.monitor=val_accuracy", "trainer.checkpoint.mode=min",
                                  f"trainer.checkpoint.evaluate={evaluate}", f"output_dir={tmp_path}")))
    data = load_data(result.settings.data)

    def test_accuracy(checkpoint: str) -> float:
        model = keras.models.load_model(tmp_path / "checkpoints" / checkpoint)
        predicted = np.argmax(model.predict(split_images(data, "test"), verbose=0), axis=1)
        return float(np.mean(predicted == data.test.labels))

    best, last = test_accuracy("best.keras"), test_accuracy("last.keras")
    assert best < last
    assert result.test_metrics["test_accuracy"] == pytest.approx(best if evaluate == "best" else last, abs=1e-6)


def test_a_network_that_cannot_be_built_records_no_run(compose, mlflow_store, tmp_path):
    with pytest.raises(PipelineError, match=r"^model=small_cnn cannot take 8x8x1 inputs"):
        run_pipeline(validate(compose("model=small_cnn", mlflow_store.override, f"output_dir={tmp_path}")))
    assert mlflow_store.runs() == []


def test_without_an_output_dir_a_run_gets_the_cli_layout_of_folders(compose, tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    result = run_pipeline(validate(compose("tracking=none", "trainer.epochs=1")))
    relative = result.output_dir.relative_to(tmp_path)
    assert re.fullmatch(r"outputs/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", str(relative)), relative
    assert (result.output_dir / "metrics.json").exists()


def test_a_caller_gets_the_run_id_before_training_and_none_without_tracking(compose, mlflow_store, tmp_path):
    run_ids: list[str] = []
    known_at_training_start: list[list[str]] = []

    class NoteRunIds(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            known_at_training_start.append(list(run_ids))

    tracked = run_pipeline(validate(compose(mlflow_store.override, "trainer.epochs=1", f"output_dir={tmp_path / 'a'}")),
                           RunOptions(callbacks=[NoteRunIds()], on_run_start=run_ids.append))
    assert run_ids == [tracked.run_id] == [mlflow_store.runs()[0].info.run_id]
    assert known_at_training_start == [[tracked.run_id]]

    run_pipeline(validate(compose("tracking=none", "trainer.epochs=1", f"output_dir={tmp_path / 'b'}")),
                 RunOptions(on_run_start=run_ids.append))
    assert run_ids == [tracked.run_id]
