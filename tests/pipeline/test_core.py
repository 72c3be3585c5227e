"""The whole pipeline as one function: sensible accuracy, reproducibility, the output folder."""

import json
import weakref

import keras
import numpy as np
from tensorflow.python.framework import func_graph

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


def test_release_memory_frees_earlier_runs_and_their_traced_graphs(monkeypatch):
    graphs = weakref.WeakSet()  # every FuncGraph TensorFlow traces from here on
    make_graph = func_graph.FuncGraph.__init__
    monkeypatch.setattr(func_graph.FuncGraph, "__init__", lambda self, *a, **k: (make_graph(self, *a, **k), graphs.add(self))[0])
    x, y = np.zeros((8, 4), np.float32), np.zeros((8,), np.int32)
    for _ in range(2):  # the first release freezes what survives it; later ones must still free new garbage
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0)  # traces a training step: TensorFlow registers its custom gradient
        alive = weakref.ref(model)
        del model
        release_memory()
        assert alive() is None and len(graphs) == 0
