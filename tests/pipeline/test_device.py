"""Device choice: CPU, a clear error without a GPU, and a mirrored strategy over logical CPUs."""

import pytest
import tensorflow as tf

from pipeline.compose import compose_config, validate
from pipeline.device import place
from pipeline.errors import PipelineError


def device_settings(*overrides: str):
    return validate(compose_config(list(overrides))).device


# These check the machine without a GPU (CI's); on a GPU machine device=auto and gpu rightly take the GPU.
without_gpu = pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="this machine has a GPU")


@without_gpu
def test_cpu_and_auto_without_gpu_run_on_one_cpu():
    for name in ("cpu", "auto"):
        placement = place(device_settings(f"device={name}"))
        assert placement.devices == ("/CPU:0",) and placement.replicas == 1


@without_gpu
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["device=gpu"], "device=gpu: TensorFlow sees no GPU"),
        (["device=multi_gpu"], "device=multi_gpu: TensorFlow sees no GPU; use device=cpu, or device.cpu_replicas=2"),
    ],
)
def test_gpu_devices_without_a_gpu_fail_in_one_line(overrides, expected):
    with pytest.raises(PipelineError, match=expected):
        place(device_settings(*overrides))


def test_multi_gpu_mirrors_over_logical_cpus():
    placement = place(device_settings("device=multi_gpu", "device.cpu_replicas=2"))
    assert placement.replicas == 2
    assert [name.split("/")[-1] for name in placement.devices] == ["device:CPU:0", "device:CPU:1"]
    assert "mirrored over" in placement.describe()


def test_more_cpu_replicas_than_the_started_runtime_has_is_a_clear_error():
    with pytest.raises(PipelineError, match="device.cpu_replicas=8: TensorFlow already started with 2 logical CPU"):
        place(device_settings("device=multi_gpu", "device.cpu_replicas=8"))


def test_thread_pools_cannot_change_after_start_and_say_so():
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # make sure the runtime is up
    with pytest.raises(PipelineError, match="device.intra_op_threads=7: TensorFlow already started"):
        place(device_settings("device.intra_op_threads=7"))
