"""The end of a sweep: best trial, the command reproducing it, and the parent run's metrics, tags and plots."""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # plots go to files; no display needed
import matplotlib.pyplot as plt
import numpy as np
import optuna
from mlflow.entities import Metric, RunTag
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots

from pipeline.tracking.links import run_page
from sweeps.heartbeat import RETRY_OF
from sweeps.mlflow_runs import MODEL_ID_ATTR, RUN_ID_ATTR, SweepRuns
from sweeps.settings import Param
from sweeps.space import values_from_params
from sweeps.trial_config import Scalar, format_value, reproduce_command

BASELINE_ATTR = "baseline"  # on trial 0 of a study: the command's own config
TOP = 5

PLOTS: dict[str, Callable[[optuna.Study], object]] = {
    "optimization_history": optuna_plots.plot_optimization_history,
    "param_importances": optuna_plots.plot_param_importances,
    "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
    "intermediate_values": optuna_plots.plot_intermediate_values,
}


@dataclass(frozen=True)
class RankedTrial:
    number: int
    value: float  # a pruned trial's: its best reported epoch
    state: str
    values: dict[str, Scalar]  # config key -> value
    note: str = ""  # baseline, or the trial it retries

    def line(self) -> str:
        params = " ".join(f"{k}={format_value(v)}" for k, v in self.values.items())
        note = f"  ({self.note})" if self.note else ""
        return f"{self.number:>5}  {self.value:.4f}  {self.state:<8}  {params}{note}"


@dataclass(frozen=True)
class SweepSummary:
    study_name: str
    states: dict[str, int]  # COMPLETE/PRUNED/FAIL/... -> count
    epochs_trained: int
    best_number: int | None = None
    best_value: float | None = None
    best_values: dict[str, Scalar] = field(default_factory=dict)  # config key -> value
    best_run_id: str | None = None
    best_run_page: str | None = None  # the best trial's run in the MLflow UI
    best_model_id: str | None = None
    command: str | None = None
    registered_version: str | None = None  # "<name> version <n>" when the best model was registered
    top: list[RankedTrial] = field(default_factory=list)
    stopped: str | None = None  # why the study stopped itself before n_trials (sweep.stop)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{count} {state}" for state, count in sorted(self.states.items()))
        lines = [f"Study {self.study_name}: {counts}; {self.epochs_trained} epochs trained"]
        if self.stopped:
            lines.append(f"Stopped early: {self.stopped}")
        if self.top:
            lines += [f"Top {len(self.top)} trials:", "trial  value   state     parameters",
                      *(ranked.line() for ranked in self.top)]
        if self.best_number is not None:
            lines += [
                f"Best trial {self.best_number}: value {self.best_value:.4f}",
                "Best parameters: " + " ".join(f"{k}={format_value(v)}" for k, v in self.best_values.items()),
                f"Reproduce it: {self.command}",
            ]
            if self.best_run_id:
                lines.append(f"Best trial's MLflow run: {self.best_run_page or self.best_run_id}")
            if self.best_model_id:
                lines.append(f"Best trial's model: models:/{self.best_model_id}"
                             + (f" (registered as {self.registered_version})" if self.registered_version else ""))
        return lines


def epochs_trained(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs a trial ran (its reported steps); pruned trials stop early, which is the point."""
    return len(trial.intermediate_values)


def top_trials(trials: Sequence[FrozenTrial], params: Mapping[str, Param], direction: str) -> list[RankedTrial]:
    """The best TOP trials: completed ones by value, then pruned ones by their best reported epoch."""
    pick = max if direction == "maximize" else min
    sign = -1 if direction == "maximize" else 1
    ranked = []
    for trial in trials:
        reported = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            value = trial.value
        elif trial.state == TrialState.PRUNED and reported:
            value = pick(reported)
        else:
            continue
        note = "baseline" if trial.user_attrs.get(BASELINE_ATTR) else (
            f"retry of {trial.user_attrs[RETRY_OF]}" if RETRY_OF in trial.user_attrs else "")
        values = values_from_params(trial.params, params)
        ranked.append(RankedTrial(trial.number, value, trial.state.name, values, note))
    ranked.sort(key=lambda r: (r.state != "COMPLETE", sign * r.value))
    return ranked[:TOP]


def summarize(
    study: optuna.Study, params: Mapping[str, Param], pipeline_overrides: Sequence[str], direction: str,
    runs: SweepRuns | None = None,
) -> SweepSummary:
    """The study's outcome; with `runs` (the sweep is tracked), the link to the best trial's run."""
    trials = study.get_trials(deepcopy=False)
    states = dict(Counter(trial.state.name for trial in trials))
    epochs = sum(epochs_trained(trial) for trial in trials)
    top = top_trials(trials, params, direction)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if not complete:
        return SweepSummary(study.study_name, states, epochs, top=top)
    best = study.best_trial
    values = values_from_params(best.params, params)
    run_id = best.user_attrs.get(RUN_ID_ATTR)
    page = run_page(runs.uri, runs.experiment_id, run_id) if runs and run_id else None
    return SweepSummary(
        study.study_name, states, epochs, best.number, best.value, values, run_id, page,
        best.user_attrs.get(MODEL_ID_ATTR),
        reproduce_command(pipeline_overrides, values), top=top,
    )


def log_to_parent(runs: SweepRuns, parent_run_id: str, summary: SweepSummary, study: optuna.Study) -> None:
    """Best value as a metric; best parameters, run id and command as tags (they change when a study resumes)."""
    client = runs.client
    finished = sum(count for state, count in summary.states.items() if state != TrialState.RUNNING.name)
    metrics = {f"trials_{state.lower()}": float(count) for state, count in summary.states.items()}
    metrics["epochs_trained"] = float(summary.epochs_trained)
    if summary.best_value is not None and math.isfinite(summary.best_value):
        metrics["best_value"] = summary.best_value
    tags: dict[str, str] = {}
    if summary.best_number is not None:
        tags = {f"best.{key}": format_value(value) for key, value in summary.best_values.items()}
        tags |= {"best_trial": str(summary.best_number), "best_trial_run_id": summary.best_run_id or "",
                 "best_model_id": summary.best_model_id or "", "reproduce_command": summary.command or ""}
        if summary.registered_version:
            tags["best_model_registered"] = summary.registered_version
    tags["stop_reason"] = summary.stopped or ""  # emptied when a resumed study runs on under a changed rule
    now = int(time.time() * 1000)
    client.log_batch(parent_run_id, metrics=[Metric(name, value, now, finished) for name, value in metrics.items()],
                     tags=[RunTag(key, value) for key, value in tags.items()])
    if summary.best_number is not None:
        client.log_text(parent_run_id, (summary.command or "") + "\n", "best_trial_command.txt")
    with tempfile.TemporaryDirectory() as folder:
        if save_plots(study, Path(folder)):
            client.log_artifacts(parent_run_id, folder, "optuna")  # all plots in one upload


def save_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's matplotlib plots as PNG files; a plot the study cannot have yet (e.g. 1 trial) is skipped."""
    saved = []
    for name, plot in PLOTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning on every matplotlib plot
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
        figure = np.asarray(axes).flat[0].figure
        figure.set_size_inches(8, 5)
        figure.savefig(folder / f"{name}.png", bbox_inches="tight", dpi=100)
        plt.close(figure)
        saved.append(folder / f"{name}.png")
    return saved
