"""Checks of the sweep settings, against each other and the pipeline's, that need no TensorFlow (the objective
module imports it)."""

from __future__ import annotations

import importlib.util

from pipeline.config import COST_METRICS, EPOCH_METRICS, MlflowTracking, Settings
from pipeline.errors import PipelineError
from sweeps.settings import SweepSettings


def is_epoch_metric(metric: str) -> bool:
    return metric in EPOCH_METRICS


def is_known_metric(metric: str) -> bool:
    return is_epoch_metric(metric) or metric.startswith("test_") or metric in COST_METRICS


def _check_metric(key: str, metric: str) -> None:
    if not is_known_metric(metric):
        raise PipelineError(
            f"{key}={metric}: unknown metric; choose {', '.join(EPOCH_METRICS)}, a test_* metric "
            f"(test_accuracy, test_loss, test_f1_macro) or a cost ({', '.join(COST_METRICS)})"
        )


def check_objective(settings: SweepSettings) -> None:
    if settings.objectives is not None:
        for index, goal in enumerate(settings.objectives):
            _check_metric(f"sweep.objectives[{index}].metric", goal.metric)
        if settings.stop.patience is not None or settings.stop.target is not None:
            raise PipelineError("sweep.stop: patience and target judge one objective; a multi-objective study "
                                "(sweep.objectives) has a front, not a best value; set sweep.stop.patience=null "
                                "sweep.stop.target=null")
    else:
        metric = settings.objective.metric
        _check_metric("sweep.objective.metric", metric)
        if not is_epoch_metric(metric) and settings.pruner != "none":
            raise PipelineError(
                f"sweep.objective.metric={metric}: it exists only after training, so it cannot prune; "
                f"set sweep.pruner=none or use one of {', '.join(EPOCH_METRICS)}"
            )
    _check_folds(settings)
    for index, constraint in enumerate(settings.constraints):
        _check_metric(f"sweep.constraints[{index}].metric", constraint.metric)


def _check_folds(settings: SweepSettings) -> None:
    folds = settings.objective.folds
    if folds is None:
        if settings.pruner == "wilcoxon":
            raise PipelineError("sweep.pruner=wilcoxon: compares a trial's folds with the best trial's; set "
                                "sweep.objective.folds (k >= 2) or choose median, hyperband or none")
        return
    if settings.is_multi_objective:
        raise PipelineError(f"sweep.objective.folds={folds}: cross-validates one objective; not with "
                            "sweep.objectives")
    if settings.pruner not in ("wilcoxon", "none"):
        raise PipelineError(f"sweep.objective.folds={folds}: trials are pruned across folds, not epochs; set "
                            f"sweep.pruner=wilcoxon (or none), not {settings.pruner}")


def check_models(settings: SweepSettings, pipeline: Settings) -> None:
    """Trials' models: registering is the sweep's job (only the best), and it needs a logged model."""
    tracking = pipeline.tracking
    if isinstance(tracking, MlflowTracking) and tracking.register_as:
        raise PipelineError(f"tracking.register_as={tracking.register_as}: in a sweep every trial would register its "
                            f"model; use sweep.register_best_as={tracking.register_as} to register the best trial's")
    name = settings.register_best_as
    logs_models = isinstance(tracking, MlflowTracking) and tracking.log_model and settings.trial_artifacts != "none"
    if name and not logs_models:
        raise PipelineError(f"sweep.register_best_as={name}: trials log no model with tracking={tracking.name}, "
                            f"tracking.log_model={getattr(tracking, 'log_model', False)}, "
                            f"sweep.trial_artifacts={settings.trial_artifacts}; "
                            "allowed with MLflow tracking, tracking.log_model=true and "
                            "sweep.trial_artifacts=best or all")


def check_sampler(settings: SweepSettings) -> None:
    """GPSampler fits its Gaussian process with PyTorch, an optional dependency (the CPU build is enough)."""
    if settings.sampler == "gp" and importlib.util.find_spec("torch") is None:
        raise PipelineError("sweep.sampler=gp: Optuna's GPSampler needs PyTorch, which is not installed; "
                            "pip install 'kerastrack[gp]' (the CPU build is enough) or choose tpe, random or cmaes")
