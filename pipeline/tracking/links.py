"""Links into the MLflow UI that land on the Model-training view, never on the GenAI overview.

MLflow 3's UI remembers a GenAI / Model-training switch per browser and defaults to GenAI (traces, token usage),
whatever the experiment's kind; `workflowType=machine_learning` in the link picks the runs table, with a sweep's
or multirun's parent run expandable to its children.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pipeline.config import MlflowTracking
from pipeline.tracking.store import sqlite_path, tracking_uri

UI_HOST = "127.0.0.1"  # `python -m pipeline.ui` serves here: this machine only, the UI has no authentication
UI_PORT = 5000
UI_PORT_FILE = "ui-port"
PORT_CHECK_TIMEOUT_S = 1.0
MODEL_TRAINING = "workflowType=machine_learning"


def ui_address(uri: str, port: int | None = None) -> str:
    """A tracking server is its own UI; a local store is browsed with `python -m pipeline.ui`, at the port one
    serving it now noted (`ui_port_file`), else UI_PORT."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return f"http://{UI_HOST}:{port or served_port(uri) or UI_PORT}"


def ui_port_file(uri: str) -> Path | None:
    """Where `python -m pipeline.ui` notes its port while it serves a SQLite store: beside the database, so that the
    runs' links on the same store reach it (`--port` or not)."""
    database = sqlite_path(uri)
    return database.with_name(UI_PORT_FILE) if database else None


def served_port(uri: str) -> int | None:
    """The port noted for this store, while something listens there: a UI killed without a word (kill -9, with its
    server) leaves its note behind, and a link to a dead port is worse than the default one."""
    noted = ui_port_file(uri)
    try:
        port = int(noted.read_text()) if noted else None
    except (OSError, ValueError):  # no UI running (or one that just stopped)
        return None
    return port if port and _listening(port) else None


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((UI_HOST, port), timeout=PORT_CHECK_TIMEOUT_S):  # refused at once if none
            return True
    except OSError:
        return False


def experiment_page(uri: str, experiment_id: str, port: int | None = None) -> str:
    return f"{ui_address(uri, port)}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING}"


def run_page(uri: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_address(uri)}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING}"


def run_page_of(tracking: MlflowTracking, run_id: str) -> str:
    """The page of a run known only by its id (its experiment is looked up in the store)."""
    from mlflow import MlflowClient

    uri = tracking_uri(tracking)
    return run_page(uri, MlflowClient(uri).get_run(run_id).info.experiment_id, run_id)


def run_page_with_hint(tracking: MlflowTracking, run_id: str) -> str:
    """The run's page, and for a local store the command that serves it."""
    served = " (python -m pipeline.ui serves it)" if tracking.name == "local" else ""
    return run_page_of(tracking, run_id) + served
