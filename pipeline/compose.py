"""Composing `conf/` with Hydra's compose API and validating it against the schemas (pipeline.config), with
one-line errors; and the validated settings flattened for MLflow params."""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import ValidationError

from pipeline.config import CONF_DIR, Settings
from pipeline.errors import PipelineError

# Keys that were replaced: their one-line error names the replacement.
REPLACED_KEYS = {
    "device.mixed_precision": "device.precision (auto, float32, mixed_bfloat16 or mixed_float16; "
                              "true was mixed_float16)",
}


def compose_config(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> DictConfig:
    """Compose `conf/<config_name>.yaml` with command-line style overrides; one-line errors."""
    try:
        return _compose(list(overrides), config_name)
    except (HydraException, OmegaConfBaseException) as error:
        raise PipelineError(one_line_hydra_error(error, list(overrides), config_name)) from None


def _compose(overrides: list[str], config_name: str) -> DictConfig:
    with hydra_on_conf():
        return compose(config_name=config_name, overrides=overrides)


@contextlib.contextmanager
def hydra_on_conf() -> Iterator[None]:
    """Hydra initialized on conf/ for its compose API: the running app's (its callbacks compose too), else here."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="pipeline"):
        yield


def one_line_hydra_error(error: Exception, overrides: list[str], config_name: str) -> str:
    message = str(error).strip()
    if isinstance(error, MissingConfigException) and error.options is not None:
        match = re.search(r"Could not find '([^']+)'", message)
        group, _, option = (match.group(1) if match else str(error.missing_cfg_file)).rpartition("/")
        return f"{group}={option}: unknown option; choose one of {', '.join(sorted(error.options))}"
    unknown_key = re.search(r"Could not override '([^']+)'", message)
    if unknown_key:
        key = unknown_key.group(1)
        if key in REPLACED_KEYS:
            return replaced_key_error(key)
        parent, _, _ = key.rpartition(".")
        others = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
        try:
            node = OmegaConf.select(_compose(others, config_name), parent) if parent else None
        except (HydraException, OmegaConfBaseException):
            node = None
        allowed = f"; allowed: {', '.join(map(str, node.keys()))}" if isinstance(node, DictConfig) else ""
        return f"{key}: unknown key{allowed}"
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def replaced_key_error(key: str) -> str:
    return f"{key}: replaced by {REPLACED_KEYS[key]}"


def validate(cfg: DictConfig) -> Settings:
    """Resolve and check the composed config against the schemas."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        raise PipelineError(f"{key}: missing a required value (set it on the command line, e.g. {key}=...)") from None
    assert isinstance(plain, dict)
    fields = {str(key): value for key, value in plain.items() if key != "sweep"}
    try:
        return Settings.model_validate(fields)
    except ValidationError as error:
        raise PipelineError(one_line_validation_error(error, fields)) from None


def one_line_validation_error(error: ValidationError, plain: dict[str, Any]) -> str:
    first = error.errors()[0]
    key = _dotted_key(first["loc"], plain)
    value = first.get("input")
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        return replaced_key_error(key) if key in REPLACED_KEYS else f"{key}: unknown key"
    if first["type"] in ("union_tag_invalid", "literal_error"):
        message = message.replace("Input tag", "value").replace("Input should be", "allowed:")
    if first["type"] == "value_error":
        return message.removeprefix("Value error, ")
    return f"{key}={value!r}: {message[0].lower()}{message[1:]}"


def _dotted_key(loc: tuple[Any, ...], plain: dict[str, Any]) -> str:
    """('optimizer', 'adam', 'learning_rate') -> 'optimizer.learning_rate' (drops the union's tag)."""
    parts: list[str] = []
    node: Any = plain
    for part in loc:
        if isinstance(node, dict) and part in node:
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int):
            parts.append(f"[{part}]")
            node = node[part] if part < len(node) else None
    return ".".join(parts).replace(".[", "[") or "config"


def flatten(settings: Settings) -> dict[str, Any]:
    """The resolved config as dotted keys ('optimizer.learning_rate': 0.001), for params and tags."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(f"{prefix}.{key}" if prefix else key, child)
        else:
            flat[prefix] = value

    walk("", settings.model_dump(mode="json"))
    return flat
