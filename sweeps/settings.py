"""Typed schema of the `sweep` config group (conf/sweep/), and splitting command-line overrides."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from omegaconf import OmegaConf
from pydantic import BeforeValidator, Field, ValidationError

from pipeline.compose import compose_config, one_line_validation_error, validate
from pipeline.config import Duration, PositiveInt, Schema, Settings
from pipeline.errors import PipelineError
from sweeps.trial_config import Scalar

TrialArtifacts = Literal["best", "all", "none"]


def auto_or_count(value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"sweep.startup_trials={value}: expected auto or a whole number >= 1")


AutoOrCount = Annotated[Union[Literal["auto"], int], BeforeValidator(auto_or_count)]


class FloatParam(Schema):
    key: str
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: dict[str, Scalar | list[Scalar]] | None = None


class IntParam(Schema):
    key: str
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: PositiveInt = 1
    when: dict[str, Scalar | list[Scalar]] | None = None


class CategoricalParam(Schema):
    key: str
    type: Literal["categorical"]
    choices: Annotated[list[Scalar], Field(min_length=1)]
    when: dict[str, Scalar | list[Scalar]] | None = None


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class Objective(Schema):
    metric: str = "val_accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"
    reduce: Literal["best", "last"] = "best"
    folds: Annotated[int, Field(ge=2)] | None = None  # k-fold cross-validation: the value is the folds' mean


class Goal(Schema):
    """One objective of a multi-objective study (`sweep.objectives`)."""

    metric: str
    direction: Literal["maximize", "minimize"]


class Constraint(Schema):
    """A trial is feasible only when its `metric` is at most `max` (`sweep.constraints`)."""

    metric: str
    max: float


class StopRule(Schema):
    """When the study stops itself (both may be set; the first that holds stops it)."""

    patience: PositiveInt | None = None  # finished trials in a row without an improvement of at least min_delta
    min_delta: Annotated[float, Field(ge=0)] = 0.0
    target: float | None = None  # a value of the objective that is good enough


class SweepSettings(Schema):
    study_name: Annotated[str, Field(min_length=1)]
    n_trials: PositiveInt
    n_workers: PositiveInt = 1
    storage: str | None = None
    sampler: Literal["tpe", "random", "cmaes", "gp"] = "tpe"
    seed: int = 42
    pruner: Literal["median", "hyperband", "wilcoxon", "none"] = "median"
    pruner_p_threshold: Annotated[float, Field(gt=0, le=1)] = 0.1
    pruner_warmup_epochs: Annotated[int, Field(ge=0)] = 1
    pruner_startup_trials: Annotated[int, Field(ge=0)] = 5
    objective: Objective = Objective()
    # Two or more make the study multi-objective (and replace objective.metric/direction; objective.reduce stays).
    objectives: Annotated[list[Goal], Field(min_length=2)] | None = None
    constraints: list[Constraint] = []
    stop: StopRule = StopRule()
    trial_artifacts: TrialArtifacts = "best"
    register_best_as: Annotated[str, Field(min_length=1)] | None = None
    trials_dir: str = "outputs/sweeps/kerastrack"
    heartbeat_interval: Annotated[float, Field(gt=0)] = 10
    grace_period: Annotated[float, Field(gt=0)] = 60
    baseline: bool = True
    startup_trials: AutoOrCount = "auto"
    timeout: Duration | None = None
    max_retries: Annotated[int, Field(ge=0)] = 2
    params: Annotated[dict[str, Param], Field(min_length=1)]


    @property
    def goals(self) -> list[Objective]:
        """What the study optimizes, one entry per objective, each with objective.reduce."""
        if self.objectives is None:
            return [self.objective]
        return [Objective(metric=goal.metric, direction=goal.direction, reduce=self.objective.reduce)
                for goal in self.objectives]

    @property
    def is_multi_objective(self) -> bool:
        return self.objectives is not None


def is_sweep_override(override: str) -> bool:
    """`sweep=...`, `sweep.n_trials=...`, `+sweep.x=...`, `~sweep.params.momentum` configure the study."""
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "sweep" or key.startswith("sweep.")


def load(overrides: list[str]) -> tuple[Settings, SweepSettings]:
    """Compose conf/sweeps.yaml, check the pipeline part and the sweep part; one-line errors."""
    cfg = compose_config(overrides, config_name="sweeps")
    pipeline = validate(cfg)  # the pipeline part (validate drops `sweep`)
    container = OmegaConf.to_container(cfg.sweep, resolve=True)
    assert isinstance(container, dict)  # the `sweep` group is a mapping
    plain = {str(key): value for key, value in container.items()}
    try:
        settings = SweepSettings.model_validate(plain)
    except ValidationError as error:
        message = one_line_validation_error(error, plain)
        raise PipelineError(f"sweep.{message}" if not message.startswith("sweep") else message) from None
    if settings.heartbeat_interval >= settings.grace_period:
        raise PipelineError(
            f"sweep.heartbeat_interval={settings.heartbeat_interval}: must be below "
            f"sweep.grace_period={settings.grace_period}, or live trials look dead"
        )
    return pipeline, settings
