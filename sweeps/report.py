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
from optuna.visualization import plot_pareto_front

from pipeline.tracking.links import run_page
from sweeps.heartbeat import RETRY_OF
from sweeps.mlflow_runs import MODEL_ID_ATTR, RUN_ID_ATTR, SweepRuns
from sweeps.pareto import INFEASIBLE_ATTR, best_trial, front
from sweeps.settings import Objective, Param
from sweeps.space import values_from_params
from sweeps.trial_config import Scalar, format_value, reproduce_command

BASELINE_ATTR = "baseline"  # on trial 0 of a study: the command's own config
EPOCHS_ATTR = "epochs_trained"  # on a cross-validated trial: the epochs of all its folds (its reported steps are folds)
TOP = 5

PLOTS: dict[str, Callable[[optuna.Study], object]] = {
    "optimization_history": optuna_plots.plot_optimization_history,
    "param_importances": optuna_plots.plot_param_importances,
    "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
    "intermediate_values": optuna_plots.plot_intermediate_values,
}
MULTI_OBJECTIVE_PLOTS: dict[str, Callable[[optuna.Study], object]] = {
    "pareto_front": optuna_plots.plot_pareto_front,
    "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
}


@dataclass(frozen=True)
class RankedTrial:
    number: int
    value: float  # the first objective's; a pruned trial's: its best reported epoch
    state: str
    values: dict[str, Scalar]  # config key -> value
    note: str = ""  # baseline, the trial it retries, infeasible

    def line(self) -> str:
        params = " ".join(f"{k}={format_value(v)}" for k, v in self.values.items())
        note = f"  ({self.note})" if self.note else ""
        return f"{self.number:>5}  {self.value:.4f}  {self.state:<8}  {params}{note}"


@dataclass(frozen=True)
class FrontTrial:
    """A trial on a multi-objective study's Pareto front."""

    number: int
    objectives: tuple[float, ...]  # in the order of sweep.objectives
    values: dict[str, Scalar]  # config key -> value


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
    goals: list[str] = field(default_factory=list)  # a multi-objective study's metrics, in order
    front: list[FrontTrial] = field(default_factory=list)

    def lines(self) -> list[str]:
        counts = ", ".join(f"{count} {state}" for state, count in sorted(self.states.items()))
        lines = [f"Study {self.study_name}: {counts}; {self.epochs_trained} epochs trained"]
        if self.stopped:
            lines.append(f"Stopped early: {self.stopped}")
        if self.front:
            lines += self._front_lines()
        elif self.top:
            lines += [f"Top {len(self.top)} trials:", "trial  value   state     parameters",
                      *(ranked.line() for ranked in self.top)]
        if self.best_number is not None:
            why = (f" (the front's best {self.goals[0]}, the first of sweep.objectives: the trial kept as the best "
                   "and the one sweep.register_best_as registers)") if self.front else ""
            lines += [
                f"Best trial {self.best_number}: value {self.best_value:.4f}{why}",
                "Best parameters: " + " ".join(f"{k}={format_value(v)}" for k, v in self.best_values.items()),
                f"Reproduce it: {self.command}",
            ]
            if self.best_run_id:
                lines.append(f"Best trial's MLflow run: {self.best_run_page or self.best_run_id}")
            if self.best_model_id:
                lines.append(f"Best trial's model: models:/{self.best_model_id}"
                             + (f" (registered as {self.registered_version})" if self.registered_version else ""))
        return lines


    def _front_lines(self) -> list[str]:
        widths = [max(12, len(goal)) for goal in self.goals]
        header = "trial  " + "  ".join(goal.rjust(width) for goal, width in zip(self.goals, widths)) + "  parameters"
        rows = [f"{trial.number:>5}  " + "  ".join(f"{value:>{width}.6g}" for value, width in
                                                   zip(trial.objectives, widths))
                + "  " + " ".join(f"{k}={format_value(v)}" for k, v in trial.values.items()) for trial in self.front]
        return [f"Pareto front: {len(self.front)} trials (MLflow tag optuna.pareto_front=true)", header, *rows]


def epochs_trained(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs a trial ran (its reported steps, or its folds' epochs); pruned trials stop early, which is the point."""
    return int(trial.user_attrs.get(EPOCHS_ATTR, len(trial.intermediate_values)))


def top_trials(trials: Sequence[FrozenTrial], params: Mapping[str, Param], direction: str) -> list[RankedTrial]:
    """The best TOP trials: completed ones by value, then pruned ones by their best reported epoch."""
    pick = max if direction == "maximize" else min
    sign = -1 if direction == "maximize" else 1
    ranked = []
    for trial in trials:
        reported = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
        if trial.state == TrialState.COMPLETE and trial.values:
            value = trial.values[0]
        elif trial.state == TrialState.PRUNED and reported:
            value = pick(reported)
        else:
            continue
        notes = ["baseline" if trial.user_attrs.get(BASELINE_ATTR) else (
            f"retry of {trial.user_attrs[RETRY_OF]}" if RETRY_OF in trial.user_attrs else ""),
            f"infeasible: {trial.user_attrs[INFEASIBLE_ATTR]}" if INFEASIBLE_ATTR in trial.user_attrs else ""]
        note = "; ".join(filter(None, notes))
        values = values_from_params(trial.params, params)
        ranked.append(RankedTrial(trial.number, value, trial.state.name, values, note))
    ranked.sort(key=lambda r: (r.state != "COMPLETE", sign * r.value))
    return ranked[:TOP]


def summarize(
    study: optuna.Study, params: Mapping[str, Param], pipeline_overrides: Sequence[str], goals: Sequence[Objective],
    runs: SweepRuns | None = None,
) -> SweepSummary:
    """The study's outcome (with several objectives, its Pareto front); with `runs` (the sweep is tracked), the link
    to the best trial's run."""
    trials = study.get_trials(deepcopy=False)
    states = dict(Counter(trial.state.name for trial in trials))
    epochs = sum(epochs_trained(trial) for trial in trials)
    top = top_trials(trials, params, goals[0].direction)
    on_front = [FrontTrial(trial.number, tuple(trial.values), values_from_params(trial.params, params))
                for trial in front(study)] if len(goals) > 1 else []
    names = [goal.metric for goal in goals] if len(goals) > 1 else []
    best = best_trial(study)
    if best is None:
        return SweepSummary(study.study_name, states, epochs, top=top, goals=names, front=on_front)
    values = values_from_params(best.params, params)
    run_id = best.user_attrs.get(RUN_ID_ATTR)
    page = run_page(runs.uri, runs.experiment_id, run_id) if runs and run_id else None
    return SweepSummary(
        study.study_name, states, epochs, best.number, best.values[0], values, run_id, page,
        best.user_attrs.get(MODEL_ID_ATTR),
        reproduce_command(pipeline_overrides, values), top=top, goals=names, front=on_front,
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
    if summary.front:
        tags["pareto_front_trials"] = " ".join(str(trial.number) for trial in summary.front)
    if summary.best_number is not None:
        tags |= {f"best.{key}": format_value(value) for key, value in summary.best_values.items()}
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
    """Optuna's matplotlib plots as PNG files, and a multi-objective study's Pareto front also as Optuna's interactive
    (plotly) HTML; a plot the study cannot have yet (e.g. 1 trial) is skipped."""
    multi = len(study.directions) > 1
    saved = []
    if multi and front(study):
        plot_pareto_front(study).write_html(folder / "pareto_front.html", include_plotlyjs=True)  # opens offline too
        saved.append(folder / "pareto_front.html")
    for name, plot in (MULTI_OBJECTIVE_PLOTS if multi else PLOTS).items():
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
