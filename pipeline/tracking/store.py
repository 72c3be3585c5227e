"""Where runs go: the tracking URI, the artifact folder beside a SQLite store, and the pre-flight check (once per
process and store: every entry point and every run checks, the first check in a process does the work).

Everything here resolves to absolute paths, so a changed working directory never moves the store.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import overload

from pipeline.config import PROJECT_ROOT, MlflowTracking, NoTracking, TrackingSettings
from pipeline.credentials import PASSWORD_VARIABLE, USERNAME_VARIABLE, basic_auth_header, redact
from pipeline.errors import PipelineError

SQLITE = "sqlite:///"
LOCAL_DB = PROJECT_ROOT / "mlruns" / "mlflow.db"
SERVER_TIMEOUT_S = 5.0
# Logs at INFO while MLflow creates (or migrates) a SQLite store's tables: nothing a user acts on. (MLflow holds
# alembic's own logger at WARNING already.)
STORE_CREATION_LOGGER = "mlflow.store.db.utils"
_passed_checks: set[str] = set()  # the URIs that passed `check_store` in this process


@overload
def tracking_uri(settings: MlflowTracking) -> str: ...
@overload
def tracking_uri(settings: NoTracking) -> None: ...
def tracking_uri(settings: TrackingSettings) -> str | None:
    """The absolute tracking URI (None for tracking=none): tracking.uri, or the project's SQLite store."""
    if isinstance(settings, NoTracking):
        return None
    uri = settings.uri or f"{SQLITE}{LOCAL_DB}"
    if uri.startswith(SQLITE):
        return f"{SQLITE}{Path(uri.removeprefix(SQLITE)).expanduser().resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix(SQLITE)) if uri.startswith(SQLITE) else None


def artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store live in `artifacts/` beside the database; a server picks its own."""
    database = sqlite_path(uri)
    return (database.parent / "artifacts").as_uri() if database else None


def check_store(uri: str) -> None:
    """Fail in one line now, before training, if runs could not be recorded at the end."""
    if uri in _passed_checks:
        return
    database = sqlite_path(uri)
    if database is not None:
        _check_writable(database, uri)
        _quiet_table_creation()
    elif uri.startswith(("http://", "https://")):
        _check_server(uri)
    _passed_checks.add(uri)


def _check_writable(database: Path, uri: str) -> None:
    folders = (database.parent, database.parent / "artifacts")
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"tracking.uri={uri}: cannot create {error.filename} ({error.strerror}); "
                            "choose a writable place with tracking.uri=sqlite:///<path>/mlflow.db "
                            "or use tracking=none") from None
    for path in (*folders, database):
        if path.exists() and not os.access(path, os.W_OK):
            raise PipelineError(f"tracking.uri={uri}: {path} is not writable; "
                                "choose a writable place with tracking.uri=sqlite:///<path>/mlflow.db "
                                "or use tracking=none")


def _quiet_table_creation() -> None:
    """Before the first MLflow client opens the store (every entry point checks it first); PIPELINE_DEBUG=1 shows
    those lines."""
    if os.environ.get("PIPELINE_DEBUG") != "1":
        logging.getLogger(STORE_CREATION_LOGGER).setLevel(logging.WARNING)


def _check_server(uri: str) -> None:
    """Reachable (/health, which needs no login), then a read that needs the login when the server has one."""
    base = uri.rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=SERVER_TIMEOUT_S) as response:
            response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise _unreachable(uri, error) from None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/experiments/search?max_results=1",
                                     headers=basic_auth_header())
    try:
        with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if error.code == 401:
            user = os.environ.get(USERNAME_VARIABLE)
            problem = f"refused the login of user {user!r}" if user else "requires a login"
            raise PipelineError(f"tracking.uri={redact(uri)}: the MLflow server {problem} (HTTP 401); "
                                f"set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} to an account on it") from None
        if error.code == 403:
            raise PipelineError(f"tracking.uri={redact(uri)}: user {os.environ.get(USERNAME_VARIABLE)!r} may not read "
                                "experiments on this MLflow server (HTTP 403); "
                                "ask its admin for a permission") from None
        raise PipelineError(f"tracking.uri={redact(uri)}: the MLflow server answered HTTP {error.code} "
                            f"({error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        raise _unreachable(uri, error) from None


def _unreachable(uri: str, error: Exception) -> PipelineError:
    return PipelineError(f"tracking.uri={redact(uri)}: MLflow server unreachable ({getattr(error, 'reason', error)}); "
                         "start it (mlflow server ...) or use tracking=local")
