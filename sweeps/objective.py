"""One trial: sample values, build the trial's config, run the pipeline in-process, judge the outcome."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from pipeline.compose import validate
from pipeline.core import ArtifactFilter, RunOptions, run_pipeline
from pipeline.errors import TrainingStopped
from sweeps.mlflow_runs import MODEL_ID_ATTR, RUN_ID_ATTR, SweepRuns
from sweeps.objective_checks import is_epoch_metric
from sweeps.settings import Objective, Param, TrialArtifacts
from sweeps.space import suggest
from sweeps.trial_config import TrialConfigs, as_overrides


class NonFiniteObjective(Exception):
    """A trained run whose objective is NaN or infinite: the trial fails, and so does its run."""


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    value: float | None = None
    run_id: str | None = None
    reason: str = ""


class TrialReporter(keras.callbacks.Callback):
    """Reports the objective's metric every epoch (both trainers call this) and stops pruned trials."""

    def __init__(self, trial: optuna.Trial, metric: str):
        super().__init__()
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.metric)
        if not is_epoch_metric(self.metric) or value is None or not math.isfinite(float(value)):
            return
        self.trial.report(float(value), step=epoch + 1)  # epochs counted from 1, as in MLflow
        if self.trial.should_prune():
            raise TrainingStopped(f"pruned after epoch {epoch + 1} ({self.metric}={float(value):.4f})")


@dataclass
class TrialRunLink:
    """The trial's MLflow run, stored on the trial as soon as the pipeline records it (`RunOptions.on_run_start`),
    so a worker killed later still leaves the mapping behind."""

    trial: optuna.Trial
    run_id: str | None = None

    def __call__(self, run_id: str) -> None:
        self.run_id = run_id
        self.trial.set_user_attr(RUN_ID_ATTR, run_id)


def objective_value(
    history: Mapping[str, list[float]], test_metrics: Mapping[str, float], objective: Objective
) -> float:
    """The trial's value: the best (or last) epoch of a per-epoch metric, or a test_* metric."""
    if not is_epoch_metric(objective.metric):
        return float(test_metrics.get(objective.metric, math.nan))
    values = history.get(objective.metric) or [math.nan]
    if objective.reduce == "last":
        return float(values[-1])
    finite = [value for value in values if math.isfinite(value)] or [math.nan]
    return float(max(finite) if objective.direction == "maximize" else min(finite))


def beats_finished_trials(study: optuna.Study, objective: Objective, value: float) -> bool:
    """Whether `value` is better than every trial finished so far (so the final best trial always passes)."""
    try:
        best = study.best_value
    except ValueError:  # no trial completed yet
        return True
    return value > best if objective.direction == "maximize" else value < best


@dataclass
class TrialRunner:
    params: Mapping[str, Param]
    configs: TrialConfigs
    objective: Objective
    trials_dir: Path
    artifacts: TrialArtifacts
    runs: SweepRuns | None
    parent_run_id: str | None

    def __call__(self, trial: optuna.Trial) -> TrialOutcome:
        values = suggest(trial, self.params)
        cfg = self.configs.build(values)
        OmegaConf.update(cfg, "output_dir", str(self.trials_dir / f"trial-{trial.number:04d}"))
        reporter = TrialReporter(trial, self.objective.metric)
        run = TrialRunLink(trial)
        overrides: Sequence[str] = [*self.configs.pipeline_overrides, *as_overrides(values)]
        try:
            result = run_pipeline(validate(cfg), RunOptions(
                overrides=overrides, callbacks=[reporter], parent_run_id=self.parent_run_id,
                run_tags=self.runs.trial_tags(trial, values) if self.runs else {},
                log_artifacts_if=self._judge(trial), on_run_start=run,
            ))
        except TrainingStopped as stopped:
            return TrialOutcome(TrialState.PRUNED, run_id=run.run_id, reason=str(stopped))
        except NonFiniteObjective as error:
            return TrialOutcome(TrialState.FAIL, run_id=run.run_id, reason=str(error))
        except Exception as error:  # noqa: BLE001 - a failing trial must not end the sweep
            return TrialOutcome(TrialState.FAIL, run_id=run.run_id, reason=f"{type(error).__name__}: {error}")
        if result.model_id:
            trial.set_user_attr(MODEL_ID_ATTR, result.model_id)
        value = objective_value(result.history, result.test_metrics, self.objective)  # finite: judged above
        return TrialOutcome(TrialState.COMPLETE, value, result.run_id)

    def _judge(self, trial: optuna.Trial) -> ArtifactFilter:
        """The trial's result, judged before the pipeline closes its run, so the run closes once as it ended:
        a non-finite objective raises (the run closes FAILED); otherwise whether the run keeps its model and plots."""
        def judge(history: dict[str, list[float]], test_metrics: dict[str, float]) -> bool:
            value = objective_value(history, test_metrics, self.objective)
            if not math.isfinite(value):
                raise NonFiniteObjective(f"{self.objective.metric}={value}")
            if self.artifacts == "best":
                return beats_finished_trials(trial.study, self.objective, value)
            return self.artifacts == "all"
        return judge
