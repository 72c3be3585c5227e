"""The store's URI, and a store that cannot be created or reached refused in one line before any run."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from pipeline.tracking import tracking_uri
from pipeline.tracking.store import check_store
from tests.pipeline.test_tf_import import users_environment
from tests.pipeline.tracking.conftest import open_and_close, settings_for
from tests.ports import free_port


def test_tracking_uri_is_absolute_and_none_without_tracking(tmp_path, monkeypatch):
    assert tracking_uri(settings_for().tracking) == f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    assert tracking_uri(settings_for("tracking.uri=sqlite:///runs/mlflow.db").tracking) == (
        f"sqlite:///{tmp_path.resolve() / 'runs' / 'mlflow.db'}")
    assert tracking_uri(settings_for("tracking=server", "tracking.uri=http://mlflow:5000").tracking) == (
        "http://mlflow:5000")
    assert tracking_uri(settings_for("tracking=none").tracking) is None


def test_store_that_cannot_be_created_is_one_line_before_any_run(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    settings = settings_for(f"tracking.uri=sqlite:///{blocker}/mlflow.db")
    with pytest.raises(PipelineError, match=r"^tracking\.uri=sqlite:///.*a_file/mlflow\.db: cannot create") as error:
        open_and_close(settings, tmp_path)
    assert "\n" not in str(error.value)


def test_unreachable_server_is_one_line_before_any_run(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    for _ in range(2):  # a failed check is not remembered
        with pytest.raises(PipelineError, match=rf"^tracking\.uri={uri}: MLflow server unreachable") as error:
            open_and_close(settings_for("tracking=server", f"tracking.uri={uri}"), tmp_path)
        assert "\n" not in str(error.value)


def test_a_server_that_passed_is_not_asked_again_in_this_process():
    requests: list[str] = []

    class Server(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path.partition("?")[0])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        check_store(uri)
        check_store(uri)
    finally:
        server.shutdown()
        server.server_close()
    assert requests == ["/health", "/api/2.0/mlflow/experiments/search"]


@pytest.mark.parametrize("debug", [False, True], ids=["default", "PIPELINE_DEBUG=1"])
def test_a_fresh_store_is_created_without_mlflows_info_lines(tmp_path, debug):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    # As every entry point opens a store: checked first, then MLflow's client (a whole tracked run: test_run.py)
    script = ("from mlflow import MlflowClient\n"
              "from pipeline.tracking.store import check_store\n"
              f"check_store({uri!r})\n"
              f"MlflowClient({uri!r}).search_experiments()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=PROJECT_ROOT,
                            env=users_environment(**({"PIPELINE_DEBUG": "1"} if debug else {})), timeout=120)
    assert result.returncode == 0, result.stderr
    assert ("mlflow.store.db.utils: Creating initial MLflow database tables" in result.stderr) == debug, result.stderr
