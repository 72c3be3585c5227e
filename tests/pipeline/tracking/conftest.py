"""What the tracking tests share: one tracked pipeline run to read, and tracked_run opened on settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.compose import compose_config, validate
from pipeline.tracking import tracked_run
from tests.conftest import QUICK
from tests.mlflow_fixtures import new_store

EPOCHS = 2


@pytest.fixture(scope="session")
def finished(tmp_path_factory, mlflow_template_db):
    """One tracked run shared by the tests that only read what it recorded."""
    from pipeline.core import RunOptions, run_pipeline

    folder = tmp_path_factory.mktemp("tracked")
    store = new_store(folder, mlflow_template_db)
    overrides = [*QUICK, f"trainer.epochs={EPOCHS}", store.override, f"output_dir={folder / 'out'}",
                 "tracking.register_as=digits-mlp", "tracking.tensorboard=false"]  # TensorBoard: test_tensorboard
    result = run_pipeline(validate(compose_config(overrides)),
                          RunOptions(overrides=overrides, run_tags={"sweep": "none"}))
    return store, result, store.client().get_run(result.run_id)


def settings_for(*overrides: str):
    return validate(compose_config(list(overrides)))


def open_and_close(settings, tmp_path: Path, **kwargs) -> str:
    with tracked_run(settings, overrides=[], output_dir=tmp_path / "out", **kwargs) as tracker:
        return tracker.run_id
