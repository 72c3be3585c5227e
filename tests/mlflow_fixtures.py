"""Pytest fixtures for real MLflow stores in temp dirs (loaded by tests/conftest.py as a plugin)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class MlflowStore:
    """A SQLite store with its artifacts beside it, as tracking=local lays out mlruns/."""

    root: Path

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def override(self) -> str:
        return f"tracking.uri={self.uri}"

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    def runs(self) -> list:
        """Every run in every experiment, newest first."""
        client = self.client()
        experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
        return client.search_runs(experiment_ids, order_by=["attributes.start_time DESC"])


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database per session: a fresh one runs MLflow's schema migrations (seconds each)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def new_store(folder: Path, template_db: Path) -> MlflowStore:
    """An empty store in `folder`/mlruns, copied from the migrated template."""
    root = folder / "mlruns"
    root.mkdir()
    shutil.copyfile(template_db, root / "mlflow.db")
    return MlflowStore(root)


@pytest.fixture
def mlflow_store(tmp_path: Path, mlflow_template_db: Path) -> MlflowStore:
    return new_store(tmp_path, mlflow_template_db)
