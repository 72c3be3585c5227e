"""Checks of the sweep settings, against each other and the pipeline's, that need no TensorFlow (the objective
module imports it)."""

from __future__ import annotations

import importlib.util

from pipeline.config import EPOCH_METRICS, MlflowTracking, Settings
from pipeline.errors import PipelineError
from sweeps.settings import SweepSettings


def is_epoch_metric(metric: str) -> bool:
    return metric in EPOCH_METRICS


def check_objective(settings: SweepSettings) -> None:
    metric = settings.objective.metric
    if not is_epoch_metric(metric) and not metric.startswith("test_"):
        raise PipelineError(
            f"sweep.objective.metric={metric}: unknown metric; choose {', '.join(EPOCH_METRICS)} or a test_* metric "
            "(test_accuracy, test_loss, test_f1_macro)"
        )
    if not is_epoch_metric(metric) and settings.pruner != "none":
        raise PipelineError(
            f"sweep.objective.metric={metric}: a test metric exists only after training, so it cannot prune; "
            f"set sweep.pruner=none or use one of {', '.join(EPOCH_METRICS)}"
        )


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
