"""`python -m pipeline.ui [--port N] [--open] [tracking overrides]`: the MLflow UI on the project's store, on 127.0.0.1.

It prints (and with --open opens) the experiment's page in the Model-training view.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import webbrowser
from dataclasses import dataclass

from pipeline import cli
from pipeline.compose import compose_config, validate
from pipeline.config import MlflowTracking
from pipeline.errors import PipelineError
from pipeline.tracking.links import UI_HOST, UI_PORT, experiment_page
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


def server_command(uri: str, port: int) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", UI_HOST, "--port", str(port), "--workers", "1"]
    artifacts = artifact_location(uri)
    if artifacts:  # anything uploaded through the UI lands beside the store, not in the working directory
        command += ["--artifacts-destination", artifacts]
    return command


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
    with cli.reported_errors():
        options = split_options(sys.argv[1:] if argv is None else argv)
        command = cli.parse_args(options.overrides, USAGE)
        tracking = validate(compose_config(command.overrides)).tracking
        if not isinstance(tracking, MlflowTracking):
            raise PipelineError("tracking=none: there is no store to browse; use tracking=local or tracking.uri=...")
        uri = tracking_uri(tracking)
        check_store(uri)
        page = experiment_page(uri, _experiment_id(tracking, uri), options.port)
        if uri.startswith(("http://", "https://")):
            print(f"tracking=server: the MLflow server at {uri} is the UI; experiment {tracking.experiment}: {page}")
            if options.open_browser:
                webbrowser.open(page)
            return
        print(f"MLflow UI for {uri} at http://{UI_HOST}:{options.port} (Ctrl-C stops it)\n"
              f"Experiment {tracking.experiment}: {page}", flush=True)
        if options.open_browser:  # a helper process: this one becomes the server
            subprocess.Popen([sys.executable, "-c", "import sys; from pipeline.ui import open_when_serving; "
                              "open_when_serving(*sys.argv[1:])", page, f"http://{UI_HOST}:{options.port}"])
    # exec: the server takes over this process, so Ctrl-C and SIGTERM reach it directly.
    os.execv(sys.executable, server_command(uri, options.port))


def _experiment_id(tracking: MlflowTracking, uri: str) -> str:
    """The experiment's id, created now if no run made it yet, so the printed link works from the start."""
    from mlflow import MlflowClient

    from pipeline.tracking.runs import experiment_id

    return experiment_id(MlflowClient(uri), tracking, uri)


if __name__ == "__main__":
    main()
