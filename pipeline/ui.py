"""`python -m pipeline.ui [--port N] [tracking overrides]`: the MLflow UI on the project's store, on 127.0.0.1."""

from __future__ import annotations

import os
import sys

from pipeline import cli
from pipeline.config import MlflowTracking, compose_config, validate
from pipeline.errors import PipelineError
from pipeline.tracking.store import artifact_location, check_store, tracking_uri

HOST = "127.0.0.1"  # this machine only: the UI has no authentication
DEFAULT_PORT = 5000
USAGE = f"""usage: python -m pipeline.ui [--port N] [tracking.uri=... | tracking=server ...]

Serves the MLflow UI for the runs in <project>/mlruns (or tracking.uri) at http://{HOST}:<port>
(default port {DEFAULT_PORT}). Stop it with Ctrl-C."""


def split_port(arguments: list[str]) -> tuple[int, list[str]]:
    """`--port N` / `--port=N` out of the arguments; the rest are config overrides."""
    rest: list[str] = []
    port = str(DEFAULT_PORT)
    values = iter(arguments)
    for argument in values:
        if argument == "--port":
            port = next(values, "")
        elif argument.startswith("--port="):
            port = argument.removeprefix("--port=")
        else:
            rest.append(argument)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise PipelineError(f"--port {port or '(missing)'}: expected a port number from 1 to 65535")
    return int(port), rest


def server_command(uri: str, port: int) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", HOST, "--port", str(port), "--workers", "1"]
    artifacts = artifact_location(uri)
    if artifacts:  # anything uploaded through the UI lands beside the store, not in the working directory
        command += ["--artifacts-destination", artifacts]
    return command


def main(argv: list[str] | None = None) -> None:
    with cli.reported_errors():
        port, arguments = split_port(sys.argv[1:] if argv is None else argv)
        command = cli.parse_args(arguments, USAGE)
        tracking = validate(compose_config(command.overrides)).tracking
        if not isinstance(tracking, MlflowTracking):
            raise PipelineError("tracking=none: there is no store to browse; use tracking=local or tracking.uri=...")
        uri = tracking_uri(tracking)
        assert uri is not None
        if uri.startswith(("http://", "https://")):
            print(f"tracking=server: the MLflow server at {uri} is the UI; open it in a browser")
            return
        check_store(uri)
        print(f"MLflow UI for {uri} at http://{HOST}:{port} (Ctrl-C stops it)", flush=True)
    # exec: the server takes over this process, so Ctrl-C and SIGTERM reach it directly.
    os.execv(sys.executable, server_command(uri, port))


if __name__ == "__main__":
    main()
