"""Fixtures for the sweep tests: tiny sweeps in tmp dirs, and a real PostgreSQL + MLflow server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweeps.settings import load
from sweeps.study import make_storage, open_study
from tests.mlflow_fixtures import new_store
from tests.ports import free_port

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# digits, 200 training images, 2 epochs: a trial trains in about a second.
TINY = ["data.max_train_samples=200", "trainer.epochs=2", "trainer.verbose=0", "trainer.batch_size=64",
        "model.hidden_units=[32]"]


@pytest.fixture
def sweep_overrides(tmp_path: Path, mlflow_template_db: Path) -> list[str]:
    """Overrides keeping a sweep's journal, MLflow store (copied from the migrated template) and trial outputs inside
    tmp_path."""
    return [
        *TINY,
        f"sweep.storage={tmp_path}/optuna/study.log",
        f"sweep.trials_dir={tmp_path}/trials",
        new_store(tmp_path, mlflow_template_db).override,
    ]


def runs_of(overrides: list[str]):
    """The MLflow client, the parent runs, and the child runs by trial number, of a sweep's tracking.uri."""
    uri = next(o for o in overrides if o.startswith("tracking.uri=")).split("=", 1)[1]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("kerastrack")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["optuna.trial"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    return client, parents, children


def study_of(overrides: list[str]):
    """The sweep's study, loaded from its storage."""
    _, settings = load(overrides)
    return open_study(settings, make_storage(settings.storage))


def _wait_until(ready, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not start within {timeout} s")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """KERASTRACK_TEST_POSTGRES_URL (CI starts Debian's service), else a throw-away cluster on 127.0.0.1."""
    given = os.environ.get("KERASTRACK_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not binaries or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql) "
                    "and KERASTRACK_TEST_POSTGRES_URL is unset")
    bin_dir = binaries[-1]
    data = Path(tempfile.mkdtemp(prefix="kerastrack-pgdata-"))  # not under pytest's root-only tmp dir
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")  # root may not run postgres
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        [*as_postgres, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
         "-k", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import sqlalchemy

        from sweeps.study import database_url

        def accepting() -> bool:
            try:
                sqlalchemy.create_engine(database_url(url)).connect().close()
                return True
            except sqlalchemy.exc.OperationalError:
                return False

        _wait_until(accepting, "postgres")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh database on the server for one test, dropped afterwards."""
    import sqlalchemy

    from sweeps.study import database_url

    name = f"sweep_{os.getpid()}_{time.monotonic_ns()}"
    admin = sqlalchemy.create_engine(database_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


ADMIN = ("admin", "Adm1n-pw-never-stored")  # the locked server's admin login


@contextmanager
def running_mlflow_server(folder: Path, *, locked: bool = False) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1, SQLite backend and proxied artifacts in `folder`; with `locked`,
    MLflow's basic authentication (admin login ADMIN, new users may edit) as README's team setup runs it."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder}/server.db", "--artifacts-destination", str(folder / "art")]
    environment = dict(os.environ)
    if locked:
        (folder / "auth.ini").write_text(
            f"[mlflow]\ndefault_permission = EDIT\ndatabase_uri = sqlite:///{folder}/auth.db\n"
            f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        command += ["--app-name", "basic-auth"]
        environment |= {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"),
                        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-csrf-key"}
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            return False

    try:
        _wait_until(healthy, "mlflow server", timeout=120)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    with running_mlflow_server(tmp_path) as url:
        yield url
