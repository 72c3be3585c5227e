"""README's team setup: a locked MLflow server (basic auth) and PostgreSQL; logins checked before training,
passwords never recorded."""

import json
import os
import subprocess
import sys
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.sweeps.conftest import ADMIN, TINY, running_mlflow_server

pytestmark = pytest.mark.slow

WORKER = ("worker1", "W0rker-pw-never-stored")
DB_PASSWORD = "Db-pw-never-stored"


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("locked-mlflow")
    with running_mlflow_server(folder, locked=True) as url:
        _as_admin(url, "users/create", {"username": WORKER[0], "password": WORKER[1]})
        yield url, folder


def _as_admin(url: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _run(module: str, overrides: list[str], login: tuple[str, str] | None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    if login:
        environment |= {"MLFLOW_TRACKING_USERNAME": login[0], "MLFLOW_TRACKING_PASSWORD": login[1]}
    return subprocess.run([sys.executable, "-m", module, *overrides], env=environment,
                          capture_output=True, text=True, timeout=600)


def _admin_client(url: str, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    return MlflowClient(url)


def test_no_login_or_a_wrong_one_stops_in_one_line_and_records_nothing(locked_server, tmp_path, monkeypatch):
    url, _ = locked_server
    overrides = [*TINY, "tracking=server", f"tracking.uri={url}", "tracking.experiment=refused",
                 f"output_dir={tmp_path}/out"]

    anonymous = _run("pipeline.run", overrides, login=None)
    assert anonymous.returncode == 2
    assert anonymous.stderr.strip().splitlines()[-1] == (
        f"error: tracking.uri={url}: the MLflow server requires a login (HTTP 401); "
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account on it")

    wrong = _run("pipeline.run", overrides, login=(WORKER[0], "not-the-password"))
    assert wrong.returncode == 2
    assert f"refused the login of user '{WORKER[0]}' (HTTP 401)" in wrong.stderr.strip().splitlines()[-1]

    assert _admin_client(url, monkeypatch).get_experiment_by_name("refused") is None  # no experiment, no run


def test_a_team_sweep_records_with_a_login_and_no_password_reaches_the_store(
        locked_server, postgres_database, tmp_path, monkeypatch):
    url, server_folder = locked_server
    storage = postgres_database.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
    assert DB_PASSWORD in storage  # the server trusts local connections, so any password is accepted
    overrides = [*TINY, "tracking=server", f"tracking.uri={url}", "tracking.experiment=team",
                 f"sweep.storage={storage}", "sweep.n_trials=2", "sweep.study_name=team",
                 f"sweep.trials_dir={tmp_path}/trials"]

    sweep = _run("sweeps.run", overrides, login=WORKER)
    assert sweep.returncode == 0, sweep.stderr[-2000:]

    client = _admin_client(url, monkeypatch)
    runs = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    assert len(runs) == 3 and {run.info.status for run in runs} == {"FINISHED"}  # the parent and two trials
    trials = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert [run.data.tags["mlflow.user"] for run in trials] == [WORKER[0]] * 2  # who ran it: the login

    recorded = [path for folder in (server_folder, tmp_path / "trials") for path in folder.rglob("*")
                if path.is_file() and path.name != "auth.ini"]  # the server's own config holds the admin login
    assert any(path.name == "server.db" for path in recorded) and any("config.yaml" in path.name for path in recorded)
    for secret in (DB_PASSWORD, WORKER[1], ADMIN[1]):
        assert secret not in sweep.stdout + sweep.stderr
        leaks = [path for path in recorded if secret.encode() in path.read_bytes()]
        assert not leaks, f"{secret} found in {leaks}"
