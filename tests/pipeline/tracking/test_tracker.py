"""tracking=none: the plain RunTracker, which records nothing and writes no MLflow files."""

from __future__ import annotations

from pipeline.compose import validate
from pipeline.config import PROJECT_ROOT
from pipeline.tracking import RunTracker, tracked_run
from tests.pipeline.tracking.conftest import settings_for


def test_tracking_none_yields_a_tracker_that_records_nothing(tmp_path):
    with tracked_run(settings_for("tracking=none"), overrides=[], output_dir=tmp_path) as tracker:
        assert type(tracker) is RunTracker and tracker.run_id is None
        assert tracker.epoch_callback() is None and tracker.fetch_checkpoints(tmp_path / "ckpt") is False
    assert list(tmp_path.iterdir()) == []


def test_tracking_none_writes_no_mlflow_files(compose, tmp_path, monkeypatch):
    from pipeline.core import run_pipeline

    monkeypatch.chdir(tmp_path)
    project_store = sorted((PROJECT_ROOT / "mlruns").rglob("*"))
    result = run_pipeline(validate(compose("tracking=none", f"output_dir={tmp_path / 'out'}")))
    assert result.run_id is None
    assert sorted((PROJECT_ROOT / "mlruns").rglob("*")) == project_store
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    assert not any("mlruns" in str(path) or path.suffix == ".db" for path in tmp_path.rglob("*"))
