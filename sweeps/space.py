"""The search space declared in conf/sweep/*.yaml: checks before any trial, and sampling a trial's values."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import optuna
from omegaconf import DictConfig, OmegaConf

from pipeline.compose import validate
from pipeline.errors import PipelineError
from sweeps.settings import CategoricalParam, FloatParam, IntParam, Param
from sweeps.trial_config import CONFIG_GROUPS, Scalar, TrialConfigs, group_options


def conditions(param: Param) -> dict[str, list[Scalar]]:
    """`when: {optimizer: sgd}` -> {'optimizer': ['sgd']}."""
    return {key: value if isinstance(value, list) else [value] for key, value in (param.when or {}).items()}


def applies(param: Param, values: Mapping[str, Scalar]) -> bool:
    return all(values.get(key) in allowed for key, allowed in conditions(param).items())


def check_space(params: Mapping[str, Param], configs: TrialConfigs) -> None:
    """Raise PipelineError (one line) for a space no trial could run with; compose only what is needed."""
    by_key = {param.key: param for param in params.values()}
    for name, param in params.items():
        where = f"sweep.params.{name}"
        if sum(other.key == param.key for other in params.values()) > 1:
            raise PipelineError(f"{where}.key={param.key}: another parameter already sets this key")
        _check_range(where, param)
        _check_conditions(where, param, by_key)
    for group_choices in _group_combinations(params):
        for name, param in params.items():
            if param.key in CONFIG_GROUPS or not applies(param, group_choices):
                continue
            _check_key(f"sweep.params.{name}", param, group_choices, configs)


def _check_range(where: str, param: Param) -> None:
    if isinstance(param, CategoricalParam):
        if param.key in CONFIG_GROUPS:
            options = group_options(param.key)
            unknown = [choice for choice in param.choices if choice not in options]
            if unknown:
                raise PipelineError(
                    f"{where}.choices: unknown {param.key} {unknown[0]!r}; choose from {', '.join(options)}"
                )
        return
    if param.low >= param.high:
        raise PipelineError(f"{where}: empty range low={param.low} >= high={param.high}; need low < high")
    if param.log and param.low <= 0:
        raise PipelineError(f"{where}: log scale needs low > 0, got low={param.low}")
    if param.log and param.step not in (None, 1):
        raise PipelineError(f"{where}: log scale takes no step, got step={param.step}")


def _check_conditions(where: str, param: Param, by_key: Mapping[str, Param]) -> None:
    for key, allowed in conditions(param).items():
        parent = by_key.get(key)
        if not isinstance(parent, CategoricalParam) or parent.when:
            raise PipelineError(
                f"{where}.when: {key!r} must be the key of an unconditional categorical parameter; "
                f"categorical keys: {', '.join(p.key for p in by_key.values() if isinstance(p, CategoricalParam))}"
            )
        unknown = [value for value in allowed if value not in parent.choices]
        if unknown:
            raise PipelineError(f"{where}.when: {key}={unknown[0]!r} is not one of its choices {parent.choices}")


def _group_combinations(params: Mapping[str, Param]) -> list[dict[str, Scalar]]:
    """Every combination of config-group choices the space can produce ([{}] if it chooses no group)."""
    groups = [p for p in params.values() if isinstance(p, CategoricalParam) and p.key in CONFIG_GROUPS]
    return [
        {param.key: choice for param, choice in zip(groups, combination)}
        for combination in itertools.product(*(param.choices for param in groups))
    ]


def _check_key(where: str, param: Param, group_choices: dict[str, Scalar], configs: TrialConfigs) -> None:
    """The key exists with these group choices, and the range's ends pass the pipeline's schema."""
    context = " ".join(f"{group}={choice}" for group, choice in group_choices.items())
    if not configs.has_key(group_choices, param.key):
        hint = f" with {context} (declare `when:` to restrict it)" if context else ""
        raise PipelineError(f"{where}.key={param.key}: unknown config key{hint}")
    ends = param.choices if isinstance(param, CategoricalParam) else [param.low, param.high]
    for value in ends:
        try:
            validate(configs.build({**group_choices, param.key: value}))
        except PipelineError as error:
            raise PipelineError(f"{where}: {error}{' with ' + context if context else ''}") from None


def suggest(trial: optuna.Trial, params: Mapping[str, Param]) -> dict[str, Scalar]:
    """Sample a trial's values (config key -> value); conditional parameters after what they depend on."""
    values: dict[str, Scalar] = {}
    for param in _sampling_order(params):
        if not applies(param, values):
            continue
        if isinstance(param, FloatParam):
            values[param.key] = trial.suggest_float(param.key, param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, IntParam):
            values[param.key] = trial.suggest_int(param.key, param.low, param.high, log=param.log, step=param.step)
        else:
            values[param.key] = trial.suggest_categorical(param.key, param.choices)
    return values


def baseline_values(params: Mapping[str, Param], cfg: DictConfig) -> dict[str, Scalar]:
    """The command's own config as a trial (config key -> value): each searched key's composed value, or its
    group's chosen option; a value outside the searched range is left for the sampler to choose."""
    values: dict[str, Scalar] = {}
    for param in _sampling_order(params):
        if not applies(param, values):
            continue
        value = OmegaConf.select(cfg, f"{param.key}.name" if param.key in CONFIG_GROUPS else param.key)
        if _within(param, value):
            values[param.key] = value
    return values


def _within(param: Param, value: object) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    number_type = float if isinstance(param, FloatParam) else int
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return param.low <= number_type(value) <= param.high


def values_from_params(trial_params: Mapping[str, Scalar], params: Mapping[str, Param]) -> dict[str, Scalar]:
    """A finished trial's params in the order `suggest` sets them (for the reproducing command)."""
    return {param.key: trial_params[param.key] for param in _sampling_order(params) if param.key in trial_params}


def _sampling_order(params: Mapping[str, Param]) -> list[Param]:
    """Unconditional parameters first, so the conditions of the others can be read."""
    return sorted(params.values(), key=lambda param: param.when is not None)

