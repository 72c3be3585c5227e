"""Test-set metrics against a case computed by hand: the loss the trainers compile, accuracy, F1 per class."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.data.dataset import Dataset
from pipeline.data.splits import whole
from pipeline.scoring import evaluate_model, metric_safe

PROBABILITIES = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
LABELS = np.array([0, 1, 1, 2], np.int32)  # the third image is wrong: class 0 predicted for a 1


class FixedPredictions:
    """A stand-in for a trained model: reads the test batches it is given and answers the same probabilities."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict(self, batches, verbose: int = 0) -> np.ndarray:
        self.seen = [x.numpy() for x, _ in batches]
        return PROBABILITIES


def dataset() -> Dataset:
    pixels = (np.arange(4, dtype=np.uint8) * 60)[:, None, None, None] * np.ones((4, 2, 2, 1), np.uint8)
    split = whole(LABELS, pixels=pixels)
    return Dataset(source="hand", train=split, validation=split, test=split, class_names=("cat", "dog", "T-shirt/top"),
                   input_shape=(2, 2, 1))


def test_metrics_match_the_hand_computed_values() -> None:
    model = FixedPredictions()
    evaluation = evaluate_model(model, dataset(), batch_size=3)

    picked = [0.7, 0.8, 0.3, 0.6]
    assert evaluation.metrics["test_loss"] == pytest.approx(-sum(map(math.log, picked)) / 4, rel=1e-5)
    assert evaluation.metrics["test_accuracy"] == 0.75
    # cat: 1 right of 2 predicted, 1 true -> precision 1/2, recall 1, F1 2/3; dog: precision 1, recall 1/2 -> 2/3.
    assert evaluation.metrics["test_f1_cat"] == pytest.approx(2 / 3)
    assert evaluation.metrics["test_f1_dog"] == pytest.approx(2 / 3)
    assert evaluation.metrics["test_f1_T-shirt_top"] == 1.0
    assert evaluation.metrics["test_f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    np.testing.assert_array_equal(evaluation.y_pred, [0, 1, 0, 2])
    # The model read the test images in order, scaled to [0, 1], in batches of the size asked for.
    assert [len(batch) for batch in model.seen] == [3, 1]
    np.testing.assert_allclose(np.concatenate(model.seen)[:, 0, 0, 0], np.arange(4) * 60 / 255, rtol=1e-6)


def test_class_names_become_metric_names() -> None:
    assert metric_safe("T-shirt/top") == "T-shirt_top" and metric_safe("a b:c") == "a_b_c"
