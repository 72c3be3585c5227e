"""Device placement: which devices a run uses, and the TensorFlow runtime settings that go with them."""

from __future__ import annotations

import contextlib
import functools
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import keras
import tensorflow as tf

from pipeline import cluster
from pipeline.config import DeviceSettings
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Placement:
    strategy: tf.distribute.Strategy
    devices: tuple[str, ...]  # this process's
    precision: str  # the Keras dtype policy, device.precision resolved
    cluster: cluster.Cluster | None = None  # device=multi_worker

    @property
    def is_chief(self) -> bool:
        """Whether this process records the run: always, but on a multi-worker run's other workers."""
        return self.cluster is None or self.cluster.is_chief

    def run_tags(self) -> dict[str, str]:
        tags = {"devices": ", ".join(self.devices), "precision": self.precision}
        if self.cluster:
            tags |= {"cluster_size": str(len(self.cluster.workers)), "cluster_hosts": ", ".join(self.cluster.hosts)}
        return tags

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build models and optimizers inside this: variables land on the chosen device(s)."""
        with self.strategy.scope():
            if self.replicas == 1:
                with tf.device(self.devices[0]):
                    yield
            else:
                yield

    def describe(self) -> str:
        kind = "mirrored over" if self.replicas > 1 else "on"
        where = f" as {self.cluster.describe()}, {self.replicas} replicas in all" if self.cluster else ""
        return f"{kind} {', '.join(self.devices)}, {self.precision}{where}"


def place(settings: DeviceSettings) -> Placement:
    """Configure the runtime (threads, memory growth, precision) and choose the devices and strategy."""
    _configure_threads(settings)
    gpus = _visible_gpus(settings)
    placement = _placement(gpus, settings)
    keras.mixed_precision.set_global_policy(placement.precision)
    gpus_used = [device for device in placement.devices if "GPU" in device.upper()]
    auto = resolve_precision(settings.model_copy(update={"precision": "auto"}), gpus_used)
    if placement.precision == "float32" and auto == "mixed_bfloat16":
        print_bfloat16_hint()
    return placement


@functools.cache  # once per process: a sweep's trials or a multirun's jobs would repeat it
def print_bfloat16_hint() -> None:
    # Not the default: bfloat16 cost a tutorial recipe accuracy (README, Speed).
    print("Hint: this machine computes bfloat16 fast; device.precision=mixed_bfloat16 (or auto) trains larger "
          "networks faster than float32 (README, Speed)")


def _placement(gpus: list[str], settings: DeviceSettings) -> Placement:
    if settings.name == "multi_worker":
        return _multi_worker(gpus, settings)
    if settings.name == "cpu" or (settings.name == "auto" and not gpus):
        return _single("/CPU:0", settings)
    if settings.name in ("auto", "gpu"):
        if not gpus:
            raise PipelineError(
                "device=gpu: TensorFlow sees no GPU (check the NVIDIA driver and `pip install -e .[cuda]`); "
                "use device=cpu or device=auto"
            )
        return _single(gpus[0], settings)
    # multi_gpu
    if gpus:
        return Placement(tf.distribute.MirroredStrategy(gpus), tuple(gpus), resolve_precision(settings, gpus))
    if settings.cpu_replicas >= 2:
        cpus = split_cpu(settings.cpu_replicas)
        strategy = tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
        return Placement(strategy, tuple(cpus), resolve_precision(settings, []))
    raise PipelineError(
        "device=multi_gpu: TensorFlow sees no GPU; use device=cpu, or device.cpu_replicas=2 to mirror over "
        "logical CPU devices"
    )


def _multi_worker(gpus: list[str], settings: DeviceSettings) -> Placement:
    """MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (or SLURM), this worker's GPUs or its CPU.
    The workers meet first (cluster.rendezvous), as TensorFlow would wait for a missing one forever."""
    members = cluster.from_environment()
    cluster.rendezvous(members, settings.join_timeout)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": list(members.workers)}), task_type="worker", task_id=members.index,
        rpc_layer="grpc",
    )
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    # TensorFlow's coordination service takes SIGTERM for its preemption notifier: give it back to the
    # CLI's handler (pipeline.stop), which stops every worker at the same step.
    signal.signal(signal.SIGTERM, sigterm_handler)
    return Placement(strategy, tuple(gpus) or ("/CPU:0",), resolve_precision(settings, gpus), members)


def _single(device: str, settings: DeviceSettings) -> Placement:
    gpus = [device] if "GPU" in device else []
    return Placement(tf.distribute.get_strategy(), (device,), resolve_precision(settings, gpus))


def resolve_precision(settings: DeviceSettings, gpus: list[str]) -> str:
    """device.precision, `auto` resolved for the devices a run trains on: `gpus`, else the CPU."""
    if settings.precision != "auto":
        return settings.precision
    if not gpus:
        return "mixed_bfloat16" if cpu_has_fast_bfloat16() else "float32"
    physical = tf.config.list_physical_devices("GPU")
    # The slowest of the GPUs sets it: a mirrored run computes in one dtype everywhere.
    capability = min(tf.config.experimental.get_device_details(physical[int(gpu.rsplit(":", 1)[1])])
                     .get("compute_capability", (0, 0)) for gpu in gpus)
    if capability >= (8, 0):  # Ampere and later: bfloat16 needs no loss scaling
        return "mixed_bfloat16"
    return "mixed_float16" if capability >= (7, 0) else "float32"  # tensor cores since Volta


def cpu_has_fast_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """AMX or AVX512_BF16, as the kernel lists the CPU's flags (TensorFlow has no public query); Linux only."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"amx_bf16", "avx512_bf16"} & set(flags))


def _visible_gpus(settings: DeviceSettings) -> list[str]:
    physical = tf.config.list_physical_devices("GPU")
    if settings.memory_growth:
        for gpu in physical:
            with contextlib.suppress(RuntimeError):  # already initialized: the setting is already fixed
                tf.config.experimental.set_memory_growth(gpu, True)
    indices = list(range(len(physical))) if settings.gpus is None else list(settings.gpus)
    unknown = [index for index in indices if index >= len(physical)]
    if physical and unknown:
        raise PipelineError(
            f"device.gpus={settings.gpus}: no GPU {unknown[0]}; this machine has GPUs 0..{len(physical) - 1}"
        )
    return [f"/GPU:{index}" for index in indices if index < len(physical)]


def split_cpu(count: int) -> list[str]:
    """Split the CPU into `count` logical devices (possible only before TensorFlow initializes its devices)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        pass  # runtime already started: use the logical CPUs it has, if there are enough
    logical = [device.name for device in tf.config.list_logical_devices("CPU")]
    if len(logical) < count:
        raise PipelineError(
            f"device.cpu_replicas={count}: TensorFlow already started with {len(logical)} logical CPU(s); "
            "set it at the start of a fresh process"
        )
    return logical[:count]


def _configure_threads(settings: DeviceSettings) -> None:
    wanted = {
        "intra_op_threads": (settings.intra_op_threads, tf.config.threading.get_intra_op_parallelism_threads,
                             tf.config.threading.set_intra_op_parallelism_threads),
        "inter_op_threads": (settings.inter_op_threads, tf.config.threading.get_inter_op_parallelism_threads,
                             tf.config.threading.set_inter_op_parallelism_threads),
    }
    for key, (value, get, set_) in wanted.items():
        if value and get() != value:
            try:
                set_(value)
            except RuntimeError:
                raise PipelineError(
                    f"device.{key}={value}: TensorFlow already started with {get()} thread(s); "
                    "set it at the start of a fresh process"
                ) from None


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, make TensorFlow's ops deterministic too."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
