"""The whole pipeline as one function: sensible accuracy, reproducibility, the output folder, own models from
start to reload, the checkpoint that gets tested."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from pipeline.compose import validate
from pipeline.config import PROJECT_ROOT
from pipeline.core import RunOptions, run_pipeline
from pipeline.data import load_data
from pipeline.errors import PipelineError, TrainingStopped
from pipeline.inputs import split_images
from pipeline.tracking.heartbeat import close_dead_run


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


class KeepsTheModel(keras.callbacks.Callback):
    """Holds the run's model (`self.model`, set by the trainer) after the run."""


def test_the_test_set_is_predicted_one_step_per_call_whatever_training_used(compose, tmp_path):
    keeper = KeepsTheModel()
    settings = validate(compose("tracking=none", "trainer.steps_per_execution=8", f"output_dir={tmp_path}"))
    result = run_pipeline(settings, RunOptions(callbacks=[keeper]))
    assert keeper.model.steps_per_execution == 1 and keeper.model.predict_function is not None
    assert result.test_metrics["test_accuracy"] > 0.5


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


class StopInsideEpoch(keras.callbacks.Callback):
    """Stops the run before the first compiled call of `epoch` that starts at or past `step`, as a kill there."""

    def __init__(self, epoch: int, step: int):
        super().__init__()
        self.stop_epoch, self.stop_step, self.epoch = epoch, step, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == self.stop_epoch and batch >= self.stop_step:
            raise TrainingStopped("stopped inside an epoch")


def optimizer_steps(output_dir) -> int:
    return int(keras.models.load_model(output_dir / "checkpoints" / "last.keras").optimizer.iterations.numpy())


@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_a_run_stopped_inside_an_epoch_resumes_there_and_ends_as_the_uninterrupted_run(
        compose, mlflow_store, tmp_path, trainer):
    # 2 steps per call: checkpoints after steps 4, 8, 12 of each epoch; stopped before step 6 of epoch 2.
    overrides = ["deterministic=true", f"trainer={trainer}", "trainer.epochs=3", "trainer.steps_per_execution=2",
                 "trainer.checkpoint.every=3 steps", mlflow_store.override, "model.dropout=0.3",
                 "data.augment=[{RandomRotation: {factor: 0.2}}]"]
    uninterrupted = run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'whole'}")))
    with pytest.raises(TrainingStopped):
        run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'a'}")),
                     RunOptions(callbacks=[StopInsideEpoch(epoch=1, step=6)]))
    state = json.loads((tmp_path / "a" / "checkpoints" / "state.json").read_text())
    assert (state["epochs_done"], state["epoch_steps"]) == (1, 4)
    killed = next(run for run in mlflow_store.runs() if run.info.status == "KILLED")
    resumed = run_pipeline(validate(compose(*overrides, f"resume={killed.info.run_id}",
                                            f"output_dir={tmp_path / 'b'}")))

    for metric in ["loss", "accuracy", "val_loss", "val_accuracy"]:  # the resumed epoch's training metrics whole
        assert resumed.history[metric] == uninterrupted.history[metric], metric
    steps_per_epoch = -(-len(load_data(uninterrupted.settings.data).train) // uninterrupted.settings.trainer.batch_size)
    assert optimizer_steps(tmp_path / "b") == optimizer_steps(tmp_path / "whole") == 3 * steps_per_epoch
    client = mlflow_store.client()
    assert sorted(point.step for point in client.get_metric_history(killed.info.run_id, "val_accuracy")) == [1, 2, 3]
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"


def start_run(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.run", "trainer.verbose=0", *overrides], cwd=PROJECT_ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_a_run_killed_inside_an_epoch_resumes_inside_it_and_trains_the_uninterrupted_runs_steps(
        compose, mlflow_store, tmp_path, trainer):
    # One image a step: epochs long enough to be killed inside one.
    overrides = [f"trainer={trainer}", "trainer.epochs=2", "trainer.batch_size=1", "data.max_train_samples=1000",
                 "trainer.steps_per_execution=4", "trainer.checkpoint.every=10 steps", mlflow_store.override]
    first = start_run(*overrides, f"output_dir={tmp_path / 'a'}")
    state_file = tmp_path / "a" / "checkpoints" / "state.json"
    try:
        deadline = time.monotonic() + 180
        # The run opens as training begins, while it trains (pipeline.tracking.recording): both must be there.
        while not (state_file.exists() and json.loads(state_file.read_text())["epoch_steps"] and mlflow_store.runs()):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    finally:
        first.kill()
    # The run stays RUNNING after SIGKILL; the next start closes it KILLED with what its folder holds (a kill
    # mid-save included).
    (run,) = mlflow_store.runs()
    client = mlflow_store.client()
    close_dead_run(client, run, "killed by this test")
    state = json.loads(state_file.read_text())
    assert state["epoch_steps"] > 0 and state["epoch_steps"] % 4 == 0  # a call's end

    resumed = start_run(*overrides, f"resume={run.info.run_id}", f"output_dir={tmp_path / 'b'}")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    epoch = state["epochs_done"] + 1
    assert f"epoch {epoch} from step {state['epoch_steps'] + 1}" in stdout
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert sorted(point.step for point in client.get_metric_history(run.info.run_id, "val_accuracy")) == [1, 2]
    steps_per_epoch = len(load_data(validate(compose(*overrides)).data).train)  # one image a step
    assert optimizer_steps(tmp_path / "b") == 2 * steps_per_epoch


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["fit", "custom"])
def test_a_fine_tuning_run_logs_both_phases_and_resumes_a_kill_in_phase_2_there(
        compose, mlflow_store, tmp_path, capsys, trainer):
    from pipeline.model import backbone_of
    from tests.pipeline.test_backbones import digits_npz

    weights = tmp_path / "backbone.weights.h5"  # "pretrained" weights: the backbone runs with training=False
    keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(weights)
    # 1 epoch on the head, then 2 fine-tuning the last 20 layers; killed before step 3 of the last epoch.
    overrides = ["model=pretrained", f"model.weights={weights}", "data=npz",
                 f"data.path={digits_npz(tmp_path / 'digits.npz', count=96)}", f"trainer={trainer}",
                 "trainer.epochs=1", "trainer.fine_tune.epochs=2", "trainer.fine_tune.learning_rate=0.0001",
                 "trainer.fine_tune.unfreeze=20", "trainer.steps_per_execution=1", "trainer.checkpoint.every=2 steps",
                 mlflow_store.override]
    with pytest.raises(TrainingStopped):
        run_pipeline(validate(compose(*overrides, f"output_dir={tmp_path / 'a'}")),
                     RunOptions(callbacks=[StopInsideEpoch(epoch=2, step=2)]))
    state = json.loads((tmp_path / "a" / "checkpoints" / "state.json").read_text())
    assert (state["epochs_done"], state["epoch_steps"], state["phase"]) == (2, 2, 2)
    (killed,) = mlflow_store.runs()
    capsys.readouterr()

    resumed = run_pipeline(validate(compose(*overrides, f"resume={killed.info.run_id}",
                                            f"output_dir={tmp_path / 'b'}")))

    assert "Fine-tuning:" not in capsys.readouterr().out  # resumed in phase 2: unfrozen, not started again
    assert resumed.history["phase"] == [1.0, 2.0, 2.0]
    assert resumed.history["learning_rate"] == pytest.approx([1e-3, 1e-4, 1e-4])
    client = mlflow_store.client()
    assert client.get_run(killed.info.run_id).info.status == "FINISHED"
    phases = sorted((point.step, point.value) for point in client.get_metric_history(killed.info.run_id, "phase"))
    assert phases == [(1, 1.0), (2, 2.0), (3, 2.0)]
    assert sorted(point.step for point in client.get_metric_history(killed.info.run_id, "val_accuracy")) == [1, 2, 3]
    last = keras.models.load_model(tmp_path / "b" / "checkpoints" / "last.keras")
    layers = [layer for layer in backbone_of(last).layers if layer.weights]  # not the input layer
    last_20 = {layer.name for layer in backbone_of(last).layers[-20:]}
    assert [layer.trainable for layer in layers] == [layer.name in last_20 for layer in layers]
    steps_per_epoch = -(-len(load_data(resumed.settings.data).train) // resumed.settings.trainer.batch_size)
    # Phase 2's own optimizer, continued from the kill: its steps are the two fine-tuning epochs'.
    assert int(last.optimizer.iterations) == 2 * steps_per_epoch
    assert float(last.optimizer.learning_rate) == pytest.approx(1e-4)
