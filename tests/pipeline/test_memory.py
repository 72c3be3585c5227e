"""release_memory: a process that runs many trainings keeps no earlier model or traced graph."""

import weakref

import keras
import numpy as np
from tensorflow.python.framework import func_graph

from pipeline.memory import release_memory


def test_release_memory_frees_earlier_runs_and_their_traced_graphs(monkeypatch):
    graphs = weakref.WeakSet()  # every FuncGraph TensorFlow traces from here on
    make_graph = func_graph.FuncGraph.__init__

    def tracked_init(self, *args, **kwargs):
        make_graph(self, *args, **kwargs)
        graphs.add(self)

    monkeypatch.setattr(func_graph.FuncGraph, "__init__", tracked_init)
    x, y = np.zeros((8, 4), np.float32), np.zeros((8,), np.int32)
    for _ in range(2):  # the first release freezes what survives it; later ones must still free new garbage
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0)  # traces a training step: TensorFlow registers its custom gradient
        alive = weakref.ref(model)
        del model
        release_memory()
        assert alive() is None and len(graphs) == 0
