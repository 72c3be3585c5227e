"""A trial's pipeline config: the user's pipeline overrides plus the values a trial sampled.

Hydra's compose takes ~0.2 s, too much per trial, so each distinct set of config-group choices
(e.g. `optimizer=sgd`) is composed once and the sampled values are set on a copy of it.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Mapping, Sequence
from typing import Union

from omegaconf import DictConfig, OmegaConf

from pipeline.compose import compose_config
from pipeline.config import CONF_DIR

Scalar = Union[bool, int, float, str, None]
CONFIG_GROUPS = frozenset(path.name for path in CONF_DIR.iterdir() if path.is_dir() and path.name != "sweep")
_ABSENT = object()


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files in conf/<group>/."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def format_value(value: Scalar) -> str:
    """A value as Hydra's override grammar reads it back (0.001, true, null, 'a b')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value) if isinstance(value, int) or str(value).replace("_", "").isalnum() else repr(value)


def as_overrides(values: Mapping[str, Scalar]) -> list[str]:
    return [f"{key}={format_value(value)}" for key, value in values.items()]


def reproduce_command(pipeline_overrides: Sequence[str], values: Mapping[str, Scalar]) -> str:
    """The `python -m pipeline.run ...` command that trains a trial's config again."""
    return shlex.join(["python", "-m", "pipeline.run", *pipeline_overrides, *as_overrides(values)])


class TrialConfigs:
    def __init__(self, pipeline_overrides: Sequence[str], worker_overrides: Sequence[str] = ()):
        self.pipeline_overrides = list(pipeline_overrides)  # the user's: part of the reproducing command
        self.worker_overrides = list(worker_overrides)  # this worker's thread pools: not part of it
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def build(self, values: Mapping[str, Scalar]) -> DictConfig:
        """The pipeline config with `values` (config key or group -> value) applied."""
        group_choices = tuple(f"{key}={value}" for key, value in values.items() if key in CONFIG_GROUPS)
        cfg = copy.deepcopy(self._compose(group_choices))
        for key, value in values.items():
            if key not in CONFIG_GROUPS:
                OmegaConf.update(cfg, key, value, merge=False)
        return cfg

    def has_key(self, group_choices: Mapping[str, Scalar], key: str) -> bool:
        choices = tuple(f"{group}={choice}" for group, choice in group_choices.items())
        return OmegaConf.select(self._compose(choices), key, default=_ABSENT) is not _ABSENT

    def _compose(self, group_choices: tuple[str, ...]) -> DictConfig:
        if group_choices not in self._composed:
            self._composed[group_choices] = compose_config(
                [*self.pipeline_overrides, *self.worker_overrides, *group_choices]
            )
        return self._composed[group_choices]
