"""Device choice: CPU, a clear error without a GPU, and a mirrored strategy over logical CPUs."""

import keras
import pytest
import tensorflow as tf

from pipeline.compose import compose_config, validate
from pipeline.device import cpu_has_fast_bfloat16, place, print_bfloat16_hint, resolve_precision
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


@pytest.fixture
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


@without_gpu
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_the_precision_is_the_global_policy_printed_with_the_devices_and_tagged(precision, float32_after):
    placement = place(device_settings("device=cpu", f"device.precision={precision}"))
    assert keras.mixed_precision.global_policy().name == precision == placement.precision
    assert placement.describe() == f"on /CPU:0, {precision}"
    assert placement.run_tags() == {"devices": "/CPU:0", "precision": precision}


@without_gpu
def test_auto_precision_on_a_cpu_is_bfloat16_where_it_has_fast_bfloat16(float32_after):
    placement = place(device_settings("device=cpu", "device.precision=auto"))
    assert placement.precision == ("mixed_bfloat16" if cpu_has_fast_bfloat16() else "float32")


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx512f avx512_bf16 avx512_vnni", True), ("fpu amx_bf16 amx_tile", True), ("fpu sse avx2 avx512f", False),
])
def test_fast_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_fast_bfloat16(cpuinfo) is expected
    assert cpu_has_fast_bfloat16(tmp_path / "missing") is False


@pytest.mark.parametrize("capabilities, expected", [
    ([(9, 0)], "mixed_bfloat16"), ([(8, 6), (7, 5)], "mixed_float16"), ([(7, 0)], "mixed_float16"),
    ([(6, 1)], "float32"),
])
def test_auto_precision_on_gpus_follows_the_slowest_ones_compute_capability(monkeypatch, capabilities, expected):
    # No GPU here: TensorFlow's device list and details stand in for GPUs of these compute capabilities.
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: list(range(len(capabilities))))
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda gpu: {"compute_capability": capabilities[gpu]})
    gpus = [f"/GPU:{index}" for index in range(len(capabilities))]
    assert resolve_precision(device_settings("device.precision=auto"), gpus) == expected


@without_gpu
def test_float32_on_a_cpu_with_fast_bfloat16_hints_at_bfloat16_once(capsys, float32_after):
    print_bfloat16_hint.cache_clear()
    place(device_settings("device=cpu", "device.precision=float32"))
    place(device_settings("device=cpu", "device.precision=float32"))
    place(device_settings("device=cpu", "device.precision=mixed_bfloat16"))
    hints = [line for line in capsys.readouterr().out.splitlines() if "device.precision=mixed_bfloat16" in line]
    assert len(hints) == (1 if cpu_has_fast_bfloat16() else 0)
