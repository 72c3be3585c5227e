"""Typed schemas for every config group of `conf/`, and the whole run's `Settings`.

Everything here is pure Python: a typo or a bad value fails here, before TensorFlow is imported
(pipeline.compose composes `conf/` and validates it against these).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pipeline.backbones import backbone_named
from pipeline.imports import find_object

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"

PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def seconds(value: Any) -> Any:
    """`2h`, `30m`, `90s`, `600` -> seconds (a float); null stays null. The error names no key: the caller's
    one-line message puts the key in front."""
    if not isinstance(value, str):
        return value
    number, unit = (value[:-1], DURATION_UNITS[value[-1]]) if value[-1:] in DURATION_UNITS else (value, 1)
    try:
        return float(number) * unit
    except ValueError:
        raise PydanticCustomError("duration", "expected seconds or a number with s, m or h (600, 30m, 2h)") from None


Duration = Annotated[float, BeforeValidator(seconds), Field(gt=0)]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# One layer: a Keras layer class name (or `package.module:Class`) and its keyword arguments; a bare name takes none.
LayerEntry = Union[str, dict[str, Union[dict[str, Any], None]]]


def check_layer_entries(entries: list[LayerEntry], key: str) -> None:
    for index, entry in enumerate(entries):
        if isinstance(entry, dict) and len(entry) != 1:
            raise ValueError(
                f"{key}[{index}]={entry}: each entry names one layer, e.g. "
                "{Conv2D: {filters: 16, kernel_size: 3}} or Flatten"
            )


# --- data -------------------------------------------------------------------------------------


class Fold(Schema):
    """Cross-validation's split: validation is fold `index` of `k` stratified, seeded folds of the training images."""

    k: Annotated[int, Field(ge=2)]
    index: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _index_below_k(self) -> "Fold":
        if self.index >= self.k:
            raise ValueError(f"data.fold.index={self.index}: allowed 0..{self.k - 1} (data.fold.k={self.k})")
        return self


class DataBase(Schema):
    val_fraction: Fraction = 0.1
    seed: int = 42
    max_train_samples: PositiveInt | None = None
    augment: list[LayerEntry] = []  # Keras preprocessing layers applied to training batches
    # Instead of val_fraction's hold-out (max_train_samples then bounds the images folded); set by sweep.objective.folds
    fold: Fold | None = None

    @model_validator(mode="after")
    def _one_layer_per_augment_entry(self) -> "DataBase":
        check_layer_entries(self.augment, "data.augment")
        return self


class DigitsData(DataBase):
    name: Literal["digits"]
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2


class KerasData(DataBase):
    name: Literal["mnist", "fashion_mnist"]
    cache_dir: str = "~/.keras/datasets"
    origin: str
    download: bool = True


class NpzData(DataBase):
    name: Literal["npz"]
    path: str
    num_classes: PositiveInt | None = None


class ImagesData(DataBase):
    name: Literal["images"]
    path: str
    image_size: tuple[PositiveInt, PositiveInt] = (28, 28)
    color_mode: Literal["grayscale", "rgb"] = "grayscale"
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    cache: Literal["auto", "memory", "disk", "none"] = "auto"
    cache_dir: str = "~/.cache/kerastrack/images"
    memory_budget_mb: PositiveInt = 1024
    skip_bad_images: bool = False


DataSettings = Annotated[Union[DigitsData, KerasData, NpzData, ImagesData], Field(discriminator="name")]

# --- model ------------------------------------------------------------------------------------

Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]


class ModelBase(Schema):
    name: str
    dropout: Dropout = 0.0  # the one knob a sweep turns, for every model
    # Multiplies the pipeline's [0, 1] pixels before the first layer (a Keras Rescaling layer, no weights):
    # 255 feeds the raw 0..255 values a tutorial trained on.
    input_scale: Annotated[float, Field(gt=0.0)] = 1.0


class MlpModel(ModelBase):
    name: Literal["mlp"]
    hidden_units: list[PositiveInt]  # [] = logistic regression: softmax on the flattened pixels
    activation: Literal["relu", "gelu", "tanh", "sigmoid", "elu", "selu", "swish"] = "relu"


class LayersModel(ModelBase):
    """A network written as a list of Keras layers; the built-ins (small_cnn, ...) are such lists too."""

    layers: list[LayerEntry]

    @model_validator(mode="after")
    def _one_layer_per_entry(self) -> "LayersModel":
        check_layer_entries(self.layers, "model.layers")
        return self


class PythonModel(ModelBase):
    """A function `builder(input_shape=(h, w, c), num_classes=n, **kwargs)` returning a Keras model: the user's own
    (model=python) or a built-in network written in Python (model=scratch_xception)."""
    builder: str
    kwargs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _builder_is_findable(self) -> "PythonModel":
        find_object(self.builder, key="model.builder")
        return self


IMAGENET = "imagenet"


class PretrainedModel(ModelBase):
    """A keras.applications backbone (its own input preprocessing in front) under the pipeline's head: global average
    pooling, dropout (`model.dropout`), the softmax output."""

    backbone: str  # a keras.applications constructor: MobileNetV3Small, EfficientNetV2B0, ResNet50V2, Xception, ...
    weights: str | None = IMAGENET  # imagenet, null (random), or a weights file of this backbone
    freeze: bool = True  # the backbone's weights stay fixed (trainer.fine_tune unfreezes them later)

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        backbone_named(value)
        return value

    @field_validator("weights")
    @classmethod
    def _imagenet_none_or_a_file(cls, value: str | None) -> str | None:
        if value in (None, IMAGENET) or Path(value).expanduser().is_file():
            return value
        raise ValueError(f"model.weights={value}: no such file; allowed: imagenet, null or the path of a weights "
                         "file of the backbone (e.g. saved with backbone.save_weights('backbone.weights.h5'))")

    @field_validator("input_scale")
    @classmethod
    def _backbone_scales(cls, value: float) -> float:
        if value != 1.0:
            raise ValueError(f"model.input_scale={value}: model=pretrained takes only 1.0; the backbone's own "
                             "preprocessing scales the pixels as its weights expect")
        return value


def _model_kind(value: Any) -> str:
    """mlp has its own schema, a model with a builder is Python code, one with a backbone a pretrained network; any
    other is a layer list (small_cnn, layers)."""
    def get(key: str) -> Any:
        return value.get(key) if isinstance(value, dict) else getattr(value, key, None)

    if get("name") == "mlp":
        return "mlp"
    if get("name") == "pretrained" or get("backbone") is not None:
        return "pretrained"
    return "python" if get("name") == "python" or get("builder") is not None else "layers"


ModelSettings = Annotated[
    Union[
        Annotated[MlpModel, Tag("mlp")], Annotated[PythonModel, Tag("python")],
        Annotated[PretrainedModel, Tag("pretrained")], Annotated[LayersModel, Tag("layers")],
    ],
    Discriminator(_model_kind),
]

# --- optimizer --------------------------------------------------------------------------------

LearningRate = Annotated[float, Field(gt=0.0)]


class OptimizerBase(Schema):
    learning_rate: LearningRate
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    decay_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9


class SgdOptimizer(OptimizerBase):
    name: Literal["sgd"]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: bool = False


class RmspropOptimizer(OptimizerBase):
    name: Literal["rmsprop"]
    rho: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class AdamBase(OptimizerBase):
    """Adam's moment decays, shared by Adam and AdamW; each narrows `name` to its own."""

    name: str
    beta_1: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.9
    beta_2: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.999


class AdamOptimizer(AdamBase):
    name: Literal["adam"]


class AdamwOptimizer(AdamBase):
    name: Literal["adamw"]
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.004


OptimizerSettings = Annotated[
    Union[SgdOptimizer, RmspropOptimizer, AdamOptimizer, AdamwOptimizer], Field(discriminator="name")
]

# --- trainer ----------------------------------------------------------------------------------

# What both trainers log each epoch: the compiled loss and metrics (trainer.LOSS, trainer.METRICS) on training and
# validation data, and the figures trainer.EpochStats adds (`phase` only when trainer.fine_tune adds a second one).
EpochMetric = Literal["loss", "accuracy", "val_loss", "val_accuracy"]
EPOCH_METRICS: tuple[str, ...] = get_args(EpochMetric)
EPOCH_STATS = ("learning_rate", "epoch_time", "phase")
# What every run's model costs (pipeline/costs.py measures them after training; logged as metrics).
COST_METRICS: tuple[str, ...] = ("params", "model_size_mb", "latency_ms", "train_seconds")


CHECKPOINT_EVERY = re.compile(r"(?P<count>\d+(?:\.\d+)?)\s*(?P<unit>steps?|minutes?)")


class CheckpointSettings(Schema):
    monitor: EpochMetric = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    evaluate: Literal["best", "last"] = "best"  # which weights are tested and logged as the run's model
    # How often last.keras and the state are saved besides each epoch's end: epoch (only then), "<N> steps" or
    # "<M> minutes" (checked once per compiled call, so N steps is rounded up to a call's end).
    every: str = "epoch"

    @field_validator("every", mode="before")
    @classmethod
    def _epoch_steps_or_minutes(cls, value: Any) -> Any:
        if value == "epoch":
            return value
        match = CHECKPOINT_EVERY.fullmatch(value.strip()) if isinstance(value, str) else None
        if match and float(match["count"]) > 0 and (match["unit"].startswith("minute") or match["count"].isdigit()):
            return f"{match['count']} {'steps' if match['unit'].startswith('step') else 'minutes'}"
        raise ValueError(f"trainer.checkpoint.every={value!r}: allowed: epoch, <N> steps or <M> minutes "
                         "(e.g. 500 steps, 10 minutes)")

    @property
    def every_steps(self) -> int | None:
        """`every` in steps (None unless "<N> steps")."""
        count, _, unit = self.every.partition(" ")
        return int(count) if unit == "steps" else None

    @property
    def every_seconds(self) -> float | None:
        """`every` in seconds (None unless "<M> minutes")."""
        count, _, unit = self.every.partition(" ")
        return float(count) * 60 if unit == "minutes" else None


class EarlyStoppingSettings(Schema):
    enabled: bool = False
    monitor: EpochMetric = "val_loss"
    mode: Literal["max", "min"] = "min"
    patience: PositiveInt = 3
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class FineTuneSettings(Schema):
    """The second phase of a run (model=pretrained): after trainer.epochs on the head, the backbone is unfrozen and
    the whole model trained on at a low learning rate, with a fresh optimizer of the configured kind."""

    epochs: Annotated[int, Field(ge=0)] = 0  # 0: no second phase
    learning_rate: LearningRate = 1e-5
    unfreeze: PositiveInt | Literal["all"] = "all"  # all of the backbone's layers, or its last K

    @field_validator("unfreeze", mode="before")
    @classmethod
    def _all_or_count(cls, value: Any) -> Any:
        if value == "all" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"trainer.fine_tune.unfreeze={value!r}: allowed: all or a positive number of layers "
                         "(the backbone's last K)")


class TrainerSettings(Schema):
    name: Literal["fit", "custom"]
    epochs: PositiveInt  # with fine_tune: the first phase's (the head on the frozen backbone)
    batch_size: PositiveInt
    fine_tune: FineTuneSettings = FineTuneSettings()
    verbose: Literal[0, 1, 2] = 1
    checkpoint: CheckpointSettings = CheckpointSettings()
    early_stopping: EarlyStoppingSettings = EarlyStoppingSettings()
    terminate_on_nan: bool = True
    steps_per_execution: PositiveInt | Literal["auto"] = "auto"  # training steps per compiled call
    jit_compile: bool | Literal["auto"] = "auto"  # XLA; auto: only on a GPU

    @property
    def total_epochs(self) -> int:
        """Both phases' epochs: the run's last epoch number."""
        return self.epochs + self.fine_tune.epochs

    @property
    def fine_tunes(self) -> bool:
        """Whether the run has a second phase (trainer.fine_tune.epochs > 0)."""
        return self.fine_tune.epochs > 0

    def phase(self, epoch: int) -> int:
        """The phase (1, or 2 when fine-tuning) that trains `epoch` (counted from 0)."""
        return 2 if self.fine_tunes and epoch >= self.epochs else 1

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _positive_int_or_auto(cls, value: Any) -> Any:
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"trainer.steps_per_execution={value!r}: allowed: a positive integer or auto")

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _bool_or_auto(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError(f"trainer.jit_compile={value!r}: allowed: auto, true or false")


# --- device -----------------------------------------------------------------------------------


class DeviceSettings(Schema):
    name: Literal["auto", "cpu", "gpu", "multi_gpu", "multi_worker"]
    gpus: list[Annotated[int, Field(ge=0)]] | None = None
    memory_growth: bool = True
    # The Keras dtype policy; auto: mixed_bfloat16 on a CPU or GPU with fast bfloat16, mixed_float16 on an older GPU
    # with tensor cores, else float32 (pipeline.device resolves it).
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    cpu_replicas: Annotated[int, Field(ge=0)] = 0
    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    inter_op_threads: Annotated[int, Field(ge=0)] = 0
    join_timeout: Annotated[float, Field(gt=0)] = 120.0  # multi_worker: seconds to wait for every worker


# --- tracking ---------------------------------------------------------------------------------


class MlflowTracking(Schema):
    name: Literal["local", "server"]
    uri: str | None = None
    experiment: Annotated[str, Field(min_length=1)] = "kerastrack"
    run_name: str | None = None
    register_as: str | None = None
    log_model: bool = True
    system_metrics: bool = True  # CPU, memory, disk, network, GPU: did the device placement do what was asked?
    # A RUNNING run whose heartbeat is older than this died without a word (kill -9): the next start closes it KILLED.
    stale_after: Duration = 300.0
    tensorboard: bool = True  # TensorBoard logs beside MLflow's (pipeline/tracking/tensorboard.py)
    tensorboard_histograms: bool = False  # weight histograms every epoch
    # Training scalars also every N compiled calls (as Keras's TensorBoard update_freq), not only per epoch.
    tensorboard_update_freq: Union[Literal["epoch"], int] = "epoch"

    @field_validator("tensorboard_update_freq", mode="before")
    @classmethod
    def _epoch_or_calls(cls, value: Any) -> Any:
        if value == "epoch" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            return value
        raise ValueError(f"tracking.tensorboard_update_freq={value!r}: allowed: epoch, or N >= 1 (every N compiled "
                         "calls)")

    @model_validator(mode="after")
    def _server_needs_uri(self) -> "MlflowTracking":
        if self.name == "server" and not self.uri:
            raise ValueError("tracking=server needs tracking.uri=<http://host:port> or MLFLOW_TRACKING_URI")
        return self


class NoTracking(Schema):
    name: Literal["none"]


TrackingSettings = Annotated[Union[MlflowTracking, NoTracking], Field(discriminator="name")]

# --- the whole run ----------------------------------------------------------------------------


RESUME_LAST = "last"  # resume=last: the most recent killed, failed or dead run with this config


class Settings(Schema):
    seed: int = 42
    deterministic: bool = False
    resume: str | None = None
    output_dir: str | None = None
    data: DataSettings
    model: ModelSettings
    optimizer: OptimizerSettings
    trainer: TrainerSettings
    device: DeviceSettings
    tracking: TrackingSettings

    @model_validator(mode="after")
    def _resume_last_needs_one_process(self) -> "Settings":
        if self.resume == RESUME_LAST and self.device.name == "multi_worker":
            raise ValueError("resume=last cannot run with device=multi_worker: every worker must continue the same "
                             "run; give its id (resume=<run id>)")
        return self

    @model_validator(mode="after")
    def _fine_tune_needs_a_frozen_backbone(self) -> "Settings":
        if self.trainer.fine_tunes and not (isinstance(self.model, PretrainedModel) and self.model.freeze):
            raise ValueError(f"trainer.fine_tune.epochs={self.trainer.fine_tune.epochs} needs a frozen backbone to "
                             "unfreeze (model=pretrained, "
                             f"model.freeze=true); got model={self.model.name}"
                             + (", model.freeze=false" if isinstance(self.model, PretrainedModel) else ""))
        return self

    @model_validator(mode="after")
    def _multi_worker_needs_custom_loop(self) -> "Settings":
        if self.device.name == "multi_worker" and self.trainer.name == "fit":
            raise ValueError("trainer=fit cannot run with device=multi_worker: Keras 3's model.fit fails under "
                             "MultiWorkerMirroredStrategy (keras-team/keras#20585); use trainer=custom")
        return self
