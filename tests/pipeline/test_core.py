"""The whole pipeline as one function: sensible accuracy, reproducibility, the output folder."""

import json
import weakref

import keras

from pipeline.core import release_memory, run_pipeline


def test_default_config_reaches_sensible_accuracy(compose, tmp_path):
    result = run_pipeline(compose("tracking=none", "trainer.verbose=0", f"output_dir={tmp_path}", quick=False))
    assert result.test_metrics["test_accuracy"] >= 0.95
    assert json.loads((tmp_path / "metrics.json").read_text()) == result.test_metrics
    assert set(result.test_metrics) >= {"test_loss", "test_accuracy", "test_f1_macro", "test_f1_0", "test_f1_9"}


def test_deterministic_runs_repeat_exactly_on_cpu(compose, tmp_path):
    overrides = ["tracking=none", "deterministic=true", "trainer=custom", "model.dropout=0.3"]
    first = run_pipeline(compose(*overrides, f"output_dir={tmp_path / 'a'}"))
    second = run_pipeline(compose(*overrides, f"output_dir={tmp_path / 'b'}"))
    assert first.history["loss"] == second.history["loss"]
    assert first.test_metrics == second.test_metrics


def test_release_memory_frees_earlier_models_before_and_after_freezing_survivors():
    for _ in range(2):  # the first release freezes what survives it; later ones must still free new garbage
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer="adam", loss="mse")
        alive = weakref.ref(model)
        del model
        release_memory()
        assert alive() is None
