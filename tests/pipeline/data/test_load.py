"""load_data: the training-split limit, the one-dataset cache, and data read (and refused) before TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from pipeline.data import load_data
from tests.pipeline.data.conftest import (
    data_settings,
    labeled_arrays,
    npz_settings,
    run_cli_noting_tensorflow,
    write_npz,
)


def test_max_train_samples_truncates_only_the_training_split() -> None:
    full = load_data(data_settings())
    tiny = load_data(data_settings("data.max_train_samples=50"))

    assert len(tiny.train) == 50 and len(set(tiny.train.labels)) > 5  # a shuffled subset, not the first class
    np.testing.assert_array_equal(tiny.train.rows, full.train.rows[:50])
    assert len(tiny.validation) == len(full.validation) and len(tiny.test) == len(full.test)


def test_unchanged_data_is_read_once_and_a_rewritten_file_again(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "tiny.npz", labeled_arrays())
    first = load_data(npz_settings(path))
    assert load_data(npz_settings(path)) is first  # a sweep's trials share one read
    # No run can alter the next one's data.
    assert not first.train.pixels.flags.writeable and not first.test.labels.flags.writeable

    arrays = labeled_arrays()
    arrays["x_test"] = arrays["x_test"][:6]
    arrays["y_test"] = arrays["y_test"][:6]
    write_npz(path, arrays)
    assert len(load_data(npz_settings(path)).test) == 6


def test_loading_digits_does_not_import_tensorflow() -> None:
    script = (
        "import sys; from pipeline.compose import compose_config, validate; from pipeline.data import load_data;"
        "load_data(validate(compose_config([])).data); assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[3])


def test_a_data_error_from_the_command_line_comes_before_tensorflow(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "bad.npz", {**labeled_arrays(), "y_train": np.full(40, 9.5)})
    result = run_cli_noting_tensorflow("data=npz", f"data.path={path}", "tracking=none")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: data.path={path}: y_train holds non-integer labels (e.g. 9.5); " \
                                    "allowed: integer class indices", result.stderr
    assert result.stdout.strip() == "tensorflow imported: False"
