"""The run's human-readable artifacts: learning curves, confusion matrix, classification report, model summary."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import classification_report, confusion_matrix

from pipeline.data import Dataset

LEARNING_CURVE = "plots/learning_curve.png"
CONFUSION_MATRIX = "plots/confusion_matrix.png"
CLASSIFICATION_REPORT = "reports/classification_report.txt"
MODEL_SUMMARY = "reports/model_summary.txt"
TRAINING_EXAMPLES = "plots/training_examples.png"


def write_reports(folder: Path, *, data: Dataset, history: dict[str, list[float]], y_pred: np.ndarray,
                  plots: bool = True) -> None:
    """The classification report and (unless `plots` is False: they are the slow part) the plots under `folder`, laid
    out as the artifact paths above. Reads no model, so it can run on a thread while the model is being logged."""
    for name in (LEARNING_CURVE, CLASSIFICATION_REPORT):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
    if plots:
        learning_curve(history).savefig(folder / LEARNING_CURVE, dpi=80)
        confusion_plot(data, y_pred).savefig(folder / CONFUSION_MATRIX, dpi=80)
    report = classification_report(data.test.labels, y_pred, labels=list(range(data.num_classes)),
                                   target_names=list(data.class_names), digits=4, zero_division=0)
    (folder / CLASSIFICATION_REPORT).write_text(report)


def learning_curve(history: dict[str, list[float]]) -> Figure:
    """Train vs validation loss and accuracy per epoch (epochs counted from 1, as the metric steps)."""
    figure = Figure(figsize=(9, 3.5))
    # Fixed margins: layout engines double the cost.
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = history.get(key, [])
            axes.plot(range(1, len(values) + 1), values, marker=".", label=label)
        axes.set(title=metric, xlabel="epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.legend()
    return figure


def confusion_plot(data: Dataset, y_pred: np.ndarray) -> Figure:
    matrix = confusion_matrix(data.test.labels, y_pred, labels=list(range(data.num_classes)))
    size = 2.5 + 0.45 * data.num_classes
    margin = (0.6 + 0.07 * max(map(len, data.class_names))) / size  # room for the longest class name
    figure = Figure(figsize=(size, size))
    figure.subplots_adjust(left=margin, bottom=margin, right=0.97, top=0.93)
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues")
    ticks = range(data.num_classes)
    axes.set_xticks(ticks, data.class_names, rotation=90)
    axes.set_yticks(ticks, data.class_names)
    axes.set(xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    threshold = matrix.max() / 2
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, count, ha="center", va="center", fontsize=7,
                  color="white" if count > threshold else "black")
    return figure


def image_grid(images: np.ndarray, columns: int = 8) -> Figure:
    """Images in [0, 1] (n, height, width, channels) side by side, as many rows as they need."""
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(columns * 1.2, rows * 1.2))
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.05, hspace=0.05)
    figure.suptitle("training images, augmented (data.augment)", fontsize=9)
    for axes, image in zip(figure.subplots(rows, columns, squeeze=False).flat, [*images, *[None] * columns]):
        axes.set_axis_off()
        if image is not None:
            pixels = image.squeeze(-1) if image.shape[-1] == 1 else image
            axes.imshow(np.clip(pixels, 0, 1), cmap="gray", vmin=0, vmax=1)
    return figure


def write_model_summary(folder: Path, model: keras.Model) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda text, **_: lines.append(text))
    (folder / MODEL_SUMMARY).write_text("\n".join(lines))
