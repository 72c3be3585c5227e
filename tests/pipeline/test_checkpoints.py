"""Best and last checkpoints and the resume state: written atomically, best only on improvement, the state file
last and consistent with last.keras, the random generators' state carried over."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from pipeline import checkpoint_files, checkpoints
from pipeline.checkpoints import BEST, LAST, STATE, TrainingState, checkpoint_callbacks, random_variables
from pipeline.config import CheckpointSettings


def small_model(dropout: float = 0.0) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(dropout, seed=1),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def writer_for(model: keras.Model, folder, state: TrainingState | None = None, **settings) -> keras.callbacks.Callback:
    (writer,) = checkpoint_callbacks(folder, CheckpointSettings(**settings), state or TrainingState())
    writer.set_model(model)
    return writer


def mark(model: keras.Model, value: float) -> None:
    """Give every weight `value`, so a saved file says which epoch it was written in."""
    for variable in model.trainable_variables:
        variable.assign(np.full(variable.shape, value, dtype="float32"))


def marker(path) -> float:
    return float(keras.models.load_model(path).trainable_variables[0].numpy().flat[0])


@pytest.mark.parametrize(("mode", "monitor", "values", "best_epoch"), [
    ("max", "val_accuracy", [0.5, 0.4, 0.7, 0.7], 2),
    ("min", "val_loss", [0.9, 1.2, 0.3, 0.5], 2),
    ("max", "val_accuracy", [0.5, math.nan, 0.4], 0),  # a NaN epoch is never the best
])
def test_best_is_written_only_when_the_monitored_metric_improves(tmp_path, mode, monitor, values, best_epoch):
    model = small_model()
    writer = writer_for(model, tmp_path, monitor=monitor, mode=mode)
    for epoch, value in enumerate(values):
        mark(model, epoch)
        writer.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
        assert marker(tmp_path / LAST) == epoch
    assert marker(tmp_path / BEST) == best_epoch
    state = TrainingState.read(tmp_path)
    assert state.best_value == values[best_epoch] and state.epochs_done == len(values)
    assert state.history["loss"] == [1.0] * len(values)


def test_a_failing_write_keeps_the_previous_complete_checkpoint_and_state(tmp_path, monkeypatch):
    model = small_model()
    writer = writer_for(model, tmp_path)
    mark(model, 1.0)
    writer.on_epoch_end(0, {"val_accuracy": 0.5})

    def killed_mid_save(path, *args, **kwargs):
        path.write_bytes(b"half a zip file")
        raise KeyboardInterrupt

    mark(model, 2.0)
    monkeypatch.setattr(model, "save", killed_mid_save)
    with pytest.raises(KeyboardInterrupt):
        writer.on_epoch_end(1, {"val_accuracy": 0.9})
    assert marker(tmp_path / LAST) == 1.0 and marker(tmp_path / BEST) == 1.0
    state = TrainingState.read(tmp_path)
    assert state.epochs_done == 1 and state.history == {"val_accuracy": [0.5]}


def test_the_state_file_is_replaced_last_and_matches_last_keras(tmp_path, monkeypatch):
    model = small_model()
    writer = writer_for(model, tmp_path)
    replaced: list[str] = []
    replace = checkpoint_files.os.replace
    monkeypatch.setattr(checkpoint_files.os, "replace", lambda source, target: (replaced.append(target.name),
                                                                                replace(source, target)))
    writer.on_epoch_end(0, {"val_accuracy": 0.5})
    writer.on_epoch_end(1, {"val_accuracy": 0.4})
    assert replaced == [LAST, BEST, STATE, LAST, STATE]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([BEST, LAST, STATE])  # no temporary left
    state = TrainingState.read(tmp_path)
    assert state.epochs_done == 2 and state.history == {"val_accuracy": [0.5, 0.4]} and state.best_value == 0.5


@pytest.mark.parametrize(("renames_done", "epochs_done"), [
    (0, 1),  # killed before last.keras's rename: the save never counted
    (1, 2),  # after it: the save counted, its best.keras and state are renamed by settle
    (2, 2),
])
def test_a_save_killed_between_its_renames_settles_into_one_checkpoint(tmp_path, monkeypatch, renames_done,
                                                                        epochs_done):
    model = small_model()
    writer = writer_for(model, tmp_path)
    mark(model, 1.0)
    writer.on_epoch_end(0, {"val_accuracy": 0.5})
    replace, renames = checkpoint_files.os.replace, []

    def killed_after_some_renames(source, target):
        if len(renames) == renames_done:
            raise SystemExit("SIGKILL")  # nothing of the process runs after this
        renames.append(target)
        replace(source, target)

    monkeypatch.setattr(checkpoint_files.os, "replace", killed_after_some_renames)
    mark(model, 2.0)
    with pytest.raises(SystemExit):
        writer.on_epoch_end(1, {"val_accuracy": 0.9})
    monkeypatch.setattr(checkpoint_files.os, "replace", replace)
    checkpoint_files.settle(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([BEST, LAST, STATE])
    state = TrainingState.read(tmp_path)
    assert state.epochs_done == epochs_done and state.best_value == [0.5, 0.9][epochs_done - 1]
    assert marker(tmp_path / LAST) == marker(tmp_path / BEST) == epochs_done


def test_a_writer_settles_the_half_save_a_killed_run_left_in_its_folder(tmp_path):
    model = small_model()
    writer_for(model, tmp_path).on_epoch_end(0, {"val_accuracy": 0.5})
    checkpoint_files.temporary(tmp_path, LAST).write_bytes(b"half a zip file")
    checkpoint_files.temporary(tmp_path, STATE).write_text("{")
    writer_for(model, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([BEST, LAST, STATE])
    assert TrainingState.read(tmp_path).epochs_done == 1


def test_the_writer_continues_a_resumed_state_and_leaves_the_callers_alone(tmp_path):
    earlier = TrainingState(epochs_done=2, best_value=0.6, history={"val_accuracy": [0.5, 0.6]})
    writer = writer_for(small_model(), tmp_path, earlier)
    writer.on_epoch_end(2, {"val_accuracy": 0.55})
    state = TrainingState.read(tmp_path)
    assert state.epochs_done == 3 and state.best_value == 0.6 and state.history == {"val_accuracy": [0.5, 0.6, 0.55]}
    assert not (tmp_path / BEST).exists()  # 0.55 does not beat the resumed run's best
    assert earlier == TrainingState(epochs_done=2, best_value=0.6, history={"val_accuracy": [0.5, 0.6]})


def test_the_random_generators_state_round_trips_through_the_state_file(tmp_path):
    model = small_model(dropout=0.5)
    x = np.ones((64, 4), dtype="float32")
    dropout = model.layers[0]
    dropout(x, training=True)  # each draw advances the generator
    writer_for(model, tmp_path).on_epoch_end(0, {"val_accuracy": 0.5})
    (generator,) = random_variables(model, None)
    saved = generator.numpy().copy()
    next_mask = keras.ops.convert_to_numpy(dropout(x, training=True))

    fresh = small_model(dropout=0.5)  # the same seed, its generator not advanced: another mask
    assert not np.array_equal(keras.ops.convert_to_numpy(fresh.layers[0](x, training=True)), next_mask)
    fresh = small_model(dropout=0.5)
    TrainingState.read(tmp_path).restore_random_state(fresh, None)
    (restored,) = random_variables(fresh, None)
    np.testing.assert_array_equal(restored.numpy(), saved)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(fresh.layers[0](x, training=True)), next_mask)


def test_a_state_reads_back_as_written_nan_included(tmp_path):
    state = TrainingState(epochs_done=3, best_value=0.25, history={"loss": [1.0, math.nan, 0.5]},
                          random_state=[[1, 2]])
    (tmp_path / STATE).write_text(state.to_json())
    read = TrainingState.read(tmp_path)
    assert (read.epochs_done, read.best_value, read.random_state) == (3, 0.25, [[1, 2]])
    assert read.history["loss"][0] == 1.0 and math.isnan(read.history["loss"][1]) and read.history["loss"][2] == 0.5


def test_inside_an_epoch_the_writer_saves_once_n_steps_have_passed_at_a_calls_start(tmp_path):
    model = small_model()
    writer = writer_for(model, tmp_path, every="5 steps")
    writer.on_epoch_begin(0)
    saved = []
    for step in range(0, 15, 3):  # calls of 3 steps: those starting at steps 6 (>= 5) and 12 (6 since) save
        mark(model, step)
        writer.on_train_batch_begin(step)
        if (tmp_path / STATE).exists():
            saved.append(TrainingState.read(tmp_path).epoch_steps)
    assert saved == [6, 6, 12] and marker(tmp_path / LAST) == 12
    state = TrainingState.read(tmp_path)
    assert state.epochs_done == 0 and state.history == {}
    assert len(state.metric_state) == len(model.metrics_variables) > 0
    writer.on_epoch_end(0, {"val_accuracy": 0.5})
    state = TrainingState.read(tmp_path)
    assert (state.epochs_done, state.epoch_steps, state.metric_state) == (1, 0, [])


def test_inside_an_epoch_the_writer_saves_once_m_minutes_have_passed(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    writer = writer_for(small_model(), tmp_path, every="2 minutes")
    writer.on_epoch_begin(0)
    saved = []
    for step, minutes in [(4, 1.0), (8, 2.5), (12, 3.5), (16, 4.6)]:  # 16: 2.1 minutes after the save at 8
        clock[0] = 1000.0 + 60 * minutes
        writer.on_train_batch_begin(step)
        saved.append(TrainingState.read(tmp_path).epoch_steps if (tmp_path / STATE).exists() else None)
    assert saved == [None, 8, 8, 16]


def test_every_epoch_writes_nothing_inside_an_epoch(tmp_path):
    writer = writer_for(small_model(), tmp_path)
    writer.on_epoch_begin(0)
    for step in range(0, 1000, 10):
        writer.on_train_batch_begin(step)
    assert not any(tmp_path.iterdir())


def test_a_resumed_epoch_counts_on_from_its_checkpoint_and_gets_its_training_metrics_back(tmp_path):
    model = small_model()
    model.fit(np.ones((8, 4), "float32"), np.zeros(8), verbose=0)  # builds the metrics
    saved = [float(index + 3) for index in range(len(model.metrics_variables))]  # loss: its total and count
    assert saved
    earlier = TrainingState(epochs_done=2, epoch_steps=7, metric_state=saved)
    writer = writer_for(model, tmp_path, earlier, every="5 steps")
    model.reset_metrics()
    writer.on_epoch_begin(2)
    assert [variable.numpy().tolist() for variable in model.metrics_variables] == saved
    writer.on_train_batch_begin(4)  # step 11 of the epoch: 4 since the resumed checkpoint
    assert not (tmp_path / STATE).exists()
    writer.on_train_batch_begin(5)
    state = TrainingState.read(tmp_path)
    assert (state.epochs_done, state.epoch_steps) == (2, 12)
