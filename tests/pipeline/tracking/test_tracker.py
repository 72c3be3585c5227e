"""tracking=none: the run trains, tests and keeps its checkpoints as any run does, and records nothing anywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.checkpoint_files import BEST, FOLDER, LAST, STATE
from pipeline.compose import validate
from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from tests.conftest import QUICK


def test_tracking_none_records_nothing_anywhere_and_the_run_still_returns_its_results(compose, tmp_path,
                                                                                      monkeypatch):
    from pipeline.core import run_pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "environment-store"))  # where MLflow would record
    project_store = sorted((PROJECT_ROOT / "mlruns").rglob("*"))
    result = run_pipeline(validate(compose("tracking=none", f"output_dir={tmp_path / 'out'}")))

    assert (result.run_id, result.model_id) == (None, None)
    assert len(result.history["loss"]) == 2 and result.test_metrics["test_accuracy"] > 0.5
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == result.test_metrics
    assert sorted(path.name for path in (tmp_path / "out" / FOLDER).iterdir()) == sorted([BEST, LAST, STATE])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    assert not any("mlruns" in str(path) or path.suffix == ".db" for path in tmp_path.rglob("*"))
    assert sorted((PROJECT_ROOT / "mlruns").rglob("*")) == project_store


def test_resume_has_nothing_to_continue_from_without_tracking(compose, tmp_path):
    from pipeline.core import run_pipeline

    with pytest.raises(PipelineError, match=r"^resume=0123abcd: that run has no last checkpoint to continue from$"):
        run_pipeline(validate(compose("tracking=none", "resume=0123abcd", f"output_dir={tmp_path}")))
    assert not (tmp_path / "metrics.json").exists()


def test_tracking_none_never_imports_mlflow(tmp_path):
    overrides = [*QUICK, "trainer.epochs=1", "tracking=none", f"output_dir={tmp_path}"]
    script = (
        "import sys\n"
        "from pipeline.compose import compose_config, validate\n"
        "from pipeline.core import run_pipeline\n"
        f"run_pipeline(validate(compose_config({overrides!r})))\n"
        "print('mlflow imported:', 'mlflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "mlflow imported: False"
    assert (tmp_path / "metrics.json").exists()
