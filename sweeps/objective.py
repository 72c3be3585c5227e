"""One trial: sample values, build the trial's config, run the pipeline in-process, judge the outcome."""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import optuna
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.trial import TrialState

from pipeline.compose import validate
from pipeline.core import ArtifactFilter, RunOptions, run_pipeline
from pipeline.errors import TrainingStopped
from pipeline.tracking.heartbeat import Heartbeat
from pipeline.tracking.runs import FAILED, FINISHED, KILLED, close_run
from sweeps.mlflow_runs import FOLD_TAG, MODEL_ID_ATTR, RUN_ID_ATTR, SweepRuns
from sweeps.objective_checks import is_epoch_metric
from sweeps.pareto import INFEASIBLE_ATTR, dominates
from sweeps.report import EPOCHS_ATTR
from sweeps.settings import Constraint, Objective, Param, TrialArtifacts
from sweeps.space import suggest
from sweeps.trial_config import Scalar, TrialConfigs, as_overrides


class NonFiniteObjective(Exception):
    """A trained run whose objective is NaN or infinite: the trial fails, and so does its run."""


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    values: tuple[float, ...] | None = None  # one per objective, when COMPLETE
    run_id: str | None = None
    reason: str = ""
    feasible: bool = True


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
    history: Mapping[str, list[float]], metrics: Mapping[str, float], objective: Objective
) -> float:
    """The trial's value: the best (or last) epoch of a per-epoch metric, or a run's metric (test_*, a cost)."""
    if not is_epoch_metric(objective.metric):
        return float(metrics.get(objective.metric, math.nan))
    values = history.get(objective.metric) or [math.nan]
    if objective.reduce == "last":
        return float(values[-1])
    finite = [value for value in values if math.isfinite(value)] or [math.nan]
    return float(max(finite) if objective.direction == "maximize" else min(finite))


def beats_finished_trials(study: optuna.Study, objective: Objective, value: float) -> bool:
    """Whether `value` is better than every (feasible) trial finished so far (so the final best trial always
    passes)."""
    try:
        best = study.best_value
    except ValueError:  # no feasible trial completed yet
        return True
    return value > best if objective.direction == "maximize" else value < best


def joins_the_front(study: optuna.Study, goals: Sequence[Objective], values: Sequence[float]) -> bool:
    """Whether no feasible trial finished so far dominates `values` (so every trial of the final front passes)."""
    return not any(dominates(trial.values, values, goals) for trial in study.best_trials)


def violations(
    history: Mapping[str, list[float]], metrics: Mapping[str, float], constraints: Sequence[Constraint]
) -> dict[str, float]:
    """Each constraint's excess over its max (feasible when <= 0), by "<metric><=<max>"; an epoch metric's last."""
    excess = {}
    for constraint in constraints:
        value = metrics.get(constraint.metric, (history.get(constraint.metric) or [math.nan])[-1])
        excess[f"{constraint.metric}<={constraint.max:g}"] = float(value) - constraint.max
    return excess


@dataclass
class TrialRunner:
    params: Mapping[str, Param]
    configs: TrialConfigs
    goals: Sequence[Objective]  # one per objective (SweepSettings.goals)
    constraints: Sequence[Constraint]
    trials_dir: Path
    artifacts: TrialArtifacts
    runs: SweepRuns | None
    parent_run_id: str | None

    def __call__(self, trial: optuna.Trial) -> TrialOutcome:
        values = suggest(trial, self.params)
        cfg = self.configs.build(values)
        OmegaConf.update(cfg, "output_dir", str(self.trials_dir / f"trial-{trial.number:04d}"))
        if self.goals[0].folds:
            return self._cross_validate(trial, values, cfg, self.goals[0].folds)
        # Optuna takes intermediate values (for pruning) from single-objective studies only.
        reporters = [TrialReporter(trial, self.goals[0].metric)] if len(self.goals) == 1 else []
        run = TrialRunLink(trial)
        overrides: Sequence[str] = [*self.configs.pipeline_overrides, *as_overrides(values)]
        try:
            result = run_pipeline(validate(cfg), RunOptions(
                overrides=overrides, callbacks=reporters, parent_run_id=self.parent_run_id,
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
        metrics = {**result.test_metrics, **result.costs}
        objectives = self._values(result.history, metrics)  # finite: judged above
        excess = violations(result.history, metrics, self.constraints)
        for key, amount in excess.items():
            trial.set_constraint(key, amount)  # before the trial is told: Optuna's samplers and best trials read it
        broken = [f"{key.split('<=')[0]}={amount + c.max:g} > {c.max:g}"
                  for (key, amount), c in zip(excess.items(), self.constraints) if amount > 0]
        if broken:
            trial.set_user_attr(INFEASIBLE_ATTR, ", ".join(broken))
        return TrialOutcome(TrialState.COMPLETE, objectives, result.run_id, feasible=not broken)

    def _cross_validate(self, trial: optuna.Trial, values: Mapping[str, Scalar], cfg: DictConfig,
                        k: int) -> TrialOutcome:
        """Train on each of k folds (a run each, under the trial's run), report each fold's value to the pruner
        (Wilcoxon: paired with the best trial's folds) and score the trial by the folds' mean."""
        goal = self.goals[0]
        run = TrialRunLink(trial)
        if self.runs:
            run(self.runs.start_trial_run(trial, values, self.parent_run_id))
        scores: list[float] = []
        epochs = 0
        outcome: TrialOutcome | None = None
        alive = Heartbeat(self.runs.client, run.run_id, self.runs.tracking.stale_after).start() if (
            self.runs and run.run_id) else None
        try:
            for index in range(k):
                fold_cfg = copy.deepcopy(cfg)
                with open_dict(fold_cfg.data):
                    fold_cfg.data.fold = {"k": k, "index": index}
                fold_cfg.output_dir = f"{cfg.output_dir}/fold-{index}"
                tags = {**self.runs.trial_tags(trial, values), FOLD_TAG: str(index)} if self.runs else {}
                result = run_pipeline(validate(fold_cfg), RunOptions(
                    overrides=[*self.configs.pipeline_overrides, *as_overrides(values),
                               f"+data.fold={{k: {k}, index: {index}}}"],
                    parent_run_id=run.run_id or self.parent_run_id, run_tags=tags,
                    log_artifacts_if=lambda history, metrics: self.artifacts == "all",
                ))
                epochs += len(result.history["loss"])
                trial.set_user_attr(EPOCHS_ATTR, epochs)
                score = objective_value(result.history, {**result.test_metrics, **result.costs}, goal)
                if not math.isfinite(score):
                    raise NonFiniteObjective(f"{goal.metric}={score} in fold {index}")
                scores.append(score)
                trial.report(score, step=index)
                if self.runs and run.run_id:
                    self.runs.client.log_metric(run.run_id, f"fold_{goal.metric}", score, step=index)
                if index < k - 1 and trial.should_prune():
                    outcome = TrialOutcome(TrialState.PRUNED, run_id=run.run_id,
                                           reason=f"pruned after fold {index + 1} of {k} ({goal.metric} "
                                                  f"{', '.join(f'{s:.4f}' for s in scores)})")
                    break
        except Exception as error:  # noqa: BLE001 - a failing trial must not end the sweep
            outcome = TrialOutcome(TrialState.FAIL, run_id=run.run_id, reason=f"{type(error).__name__}: {error}")
        except BaseException:  # Ctrl-C: the fold's run closed KILLED, and so does the trial's
            outcome = TrialOutcome(TrialState.FAIL, run_id=run.run_id, reason="interrupted")
            raise
        finally:
            if alive:
                alive.stop()
            if self.runs and run.run_id:
                self._close_trial_run(run.run_id, scores, goal, outcome)
        if outcome is not None:
            return outcome
        return TrialOutcome(TrialState.COMPLETE, (statistics.fmean(scores),), run.run_id)

    def _close_trial_run(self, run_id: str, scores: list[float], goal: Objective,
                         outcome: TrialOutcome | None) -> None:
        assert self.runs is not None
        client = self.runs.client
        if scores:
            client.log_metric(run_id, f"cv_mean_{goal.metric}", statistics.fmean(scores))
            client.log_metric(run_id, f"cv_std_{goal.metric}", statistics.pstdev(scores))
        if outcome is None:
            close_run(client, run_id, FINISHED)
            return
        stopped = outcome.state == TrialState.PRUNED or outcome.reason == "interrupted"
        client.set_tag(run_id, "stopped" if stopped else "error", outcome.reason)
        close_run(client, run_id, KILLED if stopped else FAILED)

    def _values(self, history: Mapping[str, list[float]], metrics: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(objective_value(history, metrics, goal) for goal in self.goals)

    def _judge(self, trial: optuna.Trial) -> ArtifactFilter:
        """The trial's result, judged before the pipeline closes its run, so the run closes once as it ended:
        a non-finite objective raises (the run closes FAILED); otherwise whether the run keeps its model and plots:
        with trial_artifacts=best, a feasible trial that beats every one before it (or, of several objectives, that
        none before it dominates)."""
        def judge(history: dict[str, list[float]], metrics: dict[str, float]) -> bool:
            values = self._values(history, metrics)
            for goal, value in zip(self.goals, values):
                if not math.isfinite(value):
                    raise NonFiniteObjective(f"{goal.metric}={value}")
            if self.artifacts != "best":
                return self.artifacts == "all"
            if any(amount > 0 for amount in violations(history, metrics, self.constraints).values()):
                return False
            if len(self.goals) > 1:
                return joins_the_front(trial.study, self.goals, values)
            return beats_finished_trials(trial.study, self.goals[0], values[0])
        return judge
