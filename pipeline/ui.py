"""`python -m pipeline.ui [--port N] [--open] [tracking overrides]`: the MLflow UI on the project's store, on 127.0.0.1.

It prints one line, the experiment's page in the Model-training view (and with --open opens it), and notes its port
beside the store while it serves, so that the runs' links reach it. The server's start-up notes nobody can act on
(uvicorn's INFO lines, a deprecation warning inside MLflow, the default security settings) are left out;
PIPELINE_DEBUG=1 shows them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pipeline import cli, stop
from pipeline.compose import compose_config, validate
from pipeline.config import MlflowTracking
from pipeline.errors import PipelineError
from pipeline.tracking.links import UI_HOST, UI_PORT, experiment_page, ui_port_file
from pipeline.tracking.store import artifact_location, check_store, tracking_uri

USAGE = f"""usage: python -m pipeline.ui [--port N] [--open] [tracking.uri=... | tracking=server ...]

Serves the MLflow UI for the runs in <project>/mlruns (or tracking.uri) at http://{UI_HOST}:<port>
(default port {UI_PORT}) and prints the experiment's page (Model-training view); --open opens it in a browser.
Stop it with Ctrl-C."""
SERVER_START_TIMEOUT_S = 120


@dataclass(frozen=True)
class UiOptions:
    port: int
    open_browser: bool
    overrides: list[str]


def split_options(arguments: list[str]) -> UiOptions:
    """`--port N` / `--port=N` and `--open` out of the arguments; the rest are config overrides."""
    rest: list[str] = []
    port = str(UI_PORT)
    open_browser = False
    values = iter(arguments)
    for argument in values:
        if argument == "--port":
            port = next(values, "")
        elif argument.startswith("--port="):
            port = argument.removeprefix("--port=")
        elif argument == "--open":
            open_browser = True
        else:
            rest.append(argument)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise PipelineError(f"--port {port or '(missing)'}: expected a port number from 1 to 65535")
    return UiOptions(int(port), open_browser, rest)


# What MLflow's server prints on every start whatever its options: we bind to 127.0.0.1, as the note advises.
DEFAULT_SECURITY_NOTE = "[MLflow] Security middleware enabled with default settings (localhost-only)."
QUIET_SERVER = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # its job executor's INFO lines
    "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated",  # MLflow's own import, not ours to fix
}


def server_command(uri: str, port: int, quiet: bool) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--registry-store-uri", uri,
               "--host", UI_HOST, "--port", str(port), "--workers", "1"]
    artifacts = artifact_location(uri)
    if artifacts:  # anything uploaded through the UI lands beside the store, not in the working directory
        command += ["--artifacts-destination", artifacts]
    if quiet:
        command += ["--uvicorn-opts", "--log-level warning --no-access-log"]
    return command


def serve(uri: str, port: int, quiet: bool) -> int:
    """Run the MLflow server until it stops, or until Ctrl-C or SIGTERM stops it (130); its exit code. The server
    runs in its own process group, which a stop request ends whole (MLflow's launcher and its uvicorn)."""
    server = subprocess.Popen(server_command(uri, port, quiet), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, **(QUIET_SERVER if quiet else {})}, start_new_session=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if not (quiet and line.startswith(DEFAULT_SECURITY_NOTE)):
                print(line, end="", file=sys.stderr, flush=True)
        return server.wait()
    except KeyboardInterrupt:
        return cli.INTERRUPTED
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()


@contextlib.contextmanager
def port_noted(noted: Path | None, port: int) -> Iterator[None]:
    """The port in `noted` while the block runs (nothing noted for a store that is not a local file)."""
    if noted is None:
        yield
        return
    noted.write_text(str(port))
    try:
        yield
    finally:
        if noted.exists() and noted.read_text() == str(port):  # not another UI's, started since
            noted.unlink()


def open_when_serving(page: str, address: str) -> None:
    """Open `page` in the user's browser once the server at `address` answers (run beside the server)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=2):
                webbrowser.open(page)
                return
        except OSError:
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    # A closed terminal too: the server, in its own process group, would outlive this process.
    with cli.reported_errors(stop_signals=(*stop.STOP_SIGNALS, signal.SIGHUP)):
        options = split_options(sys.argv[1:] if argv is None else argv)
        command = cli.parse_args(options.overrides, USAGE)
        tracking = validate(compose_config(command.overrides)).tracking
        if not isinstance(tracking, MlflowTracking):
            raise PipelineError("tracking=none: there is no store to browse; use tracking=local or tracking.uri=...")
        uri = tracking_uri(tracking)
        check_store(uri)
        _close_dead_runs(tracking, uri)
        page = experiment_page(uri, _experiment_id(tracking, uri), options.port)
        if uri.startswith(("http://", "https://")):
            print(f"tracking=server: the MLflow server at {uri} is the UI; experiment {tracking.experiment}: {page}")
            if options.open_browser:
                webbrowser.open(page)
            return
        print(f"MLflow UI, experiment {tracking.experiment} (Ctrl-C stops it): {page}", flush=True)
        if options.open_browser:  # a helper process, beside the server
            subprocess.Popen([sys.executable, "-c", "import sys; from pipeline.ui import open_when_serving; "
                              "open_when_serving(*sys.argv[1:])", page, f"http://{UI_HOST}:{options.port}"])
        with port_noted(ui_port_file(uri), options.port):
            code = serve(uri, options.port, quiet=os.environ.get("PIPELINE_DEBUG") != "1")
    raise SystemExit(code)


def _close_dead_runs(tracking: MlflowTracking, uri: str) -> None:
    from mlflow import MlflowClient

    from pipeline.tracking.heartbeat import close_dead_runs

    close_dead_runs(MlflowClient(uri), tracking)


def _experiment_id(tracking: MlflowTracking, uri: str) -> str:
    """The experiment's id, created now if no run made it yet, so the printed link works from the start."""
    from mlflow import MlflowClient

    from pipeline.tracking.runs import experiment_id

    return experiment_id(MlflowClient(uri), tracking, uri)


if __name__ == "__main__":
    main()
