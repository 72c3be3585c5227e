"""`python -m pipeline.ui [--port N] [--open] [--tensorboard [run | study | experiment]] [tracking overrides]`: the
MLflow UI on the project's store, or TensorBoard over runs' logs fetched from it, on 127.0.0.1.

It prints one line, the experiment's page in the Model-training view (and with --open opens it), and notes its port
beside the store while it serves, so that the runs' links reach it. The server's start-up notes nobody can act on
(uvicorn's INFO lines, a deprecation warning inside MLflow, the default security settings; TensorFlow's and
TensorBoard's start-up lines) are left out; PIPELINE_DEBUG=1 shows them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from pipeline import cli, stop
from pipeline.compose import compose_config, validate
from pipeline.config import MlflowTracking
from pipeline.errors import PipelineError
from pipeline.tracking.links import UI_HOST, UI_PORT, experiment_page, ui_port_file
from pipeline.tracking.store import artifact_location, check_store, tracking_uri

TENSORBOARD_PORT = 6006  # TensorBoard's own default
USAGE = f"""usage: python -m pipeline.ui [--port N] [--open] [--tensorboard [RUN_ID | STUDY | EXPERIMENT]]
                         [tracking.uri=... | tracking=server ...]

Serves the MLflow UI for the runs in <project>/mlruns (or tracking.uri) at http://{UI_HOST}:<port>
(default port {UI_PORT}) and prints the experiment's page (Model-training view); --open opens it in a browser.
--tensorboard serves TensorBoard instead (default port {TENSORBOARD_PORT}) over the TensorBoard logs of a run, of a
multirun's or sweep's runs (its parent run's id, or the sweep's study name) or of an experiment's runs (default:
tracking.experiment), fetched from the store; runs record them with tracking.tensorboard=true.
Stop it with Ctrl-C."""
SERVER_START_TIMEOUT_S = 120


@dataclass(frozen=True)
class UiOptions:
    port: int
    open_browser: bool
    overrides: list[str]
    tensorboard: bool = False
    target: str | None = None  # --tensorboard's run id, study or experiment


def split_options(arguments: list[str]) -> UiOptions:
    """`--port N` / `--port=N`, `--open` and `--tensorboard [target]` out of the arguments; the rest are config
    overrides (a target is the word after --tensorboard when it is neither an option nor an override)."""
    rest: list[str] = []
    port: str | None = None
    open_browser = tensorboard = False
    target = None
    values = iter(arguments)
    for argument in values:
        if argument == "--port":
            port = next(values, "")
        elif argument.startswith("--port="):
            port = argument.removeprefix("--port=")
        elif argument == "--open":
            open_browser = True
        elif argument == "--tensorboard":
            tensorboard = True
        elif tensorboard and target is None and rest == [] and not argument.startswith("-") and "=" not in argument:
            target = argument
        else:
            rest.append(argument)
    if port is None:
        port = str(TENSORBOARD_PORT if tensorboard else UI_PORT)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise PipelineError(f"--port {port or '(missing)'}: expected a port number from 1 to 65535")
    return UiOptions(int(port), open_browser, rest, tensorboard, target)


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


class ServerOutput(Protocol):
    """Which of a server's lines the user sees (on stderr)."""

    def shown(self, line: str) -> list[str]: ...  # what to show now, given its next line
    def at_exit(self) -> list[str]: ...  # what to show once it stopped


class AllBut:
    """Every line but those starting with `prefix`."""

    def __init__(self, prefix: str | None):
        self.prefix = prefix

    def shown(self, line: str) -> list[str]:
        return [] if self.prefix and line.startswith(self.prefix) else [line]

    def at_exit(self) -> list[str]:
        return []


class AfterStartUp:
    """Nothing until the server says it serves (the line starting with `started`, ours replaces it), then every
    line; a server that stops before that shows what it wrote, its error among them."""

    def __init__(self, started: str):
        self.started, self.serving = started, False
        self.held: list[str] = []

    def shown(self, line: str) -> list[str]:
        if self.serving:
            return [line]
        self.serving = line.startswith(self.started)
        if self.serving:
            self.held = []
        else:
            self.held.append(line)
        return []

    def at_exit(self) -> list[str]:
        return self.held


def run_server(command: list[str], env: dict[str, str], output: ServerOutput) -> int:
    """Run a server until it stops, or until Ctrl-C or SIGTERM stops it (130); its exit code. The server runs in its
    own process group, which a stop request ends whole (MLflow's launcher and its uvicorn; TensorBoard's data
    server), under pipeline.server_guard, which ends it too if this process is killed without a word."""
    guarded = [sys.executable, "-m", "pipeline.server_guard", str(os.getpid()), *command]
    server = subprocess.Popen(guarded, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              start_new_session=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            for shown in output.shown(line):
                print(shown, end="", file=sys.stderr, flush=True)
        code = server.wait()
        print("".join(output.at_exit()), end="", file=sys.stderr, flush=True)
        return code
    except KeyboardInterrupt:
        return cli.INTERRUPTED
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait()


def serve(uri: str, port: int, quiet: bool) -> int:
    """The MLflow server (see run_server)."""
    return run_server(server_command(uri, port, quiet), {**os.environ, **(QUIET_SERVER if quiet else {})},
                      AllBut(DEFAULT_SECURITY_NOTE if quiet else None))


def tensorboard_command(logdir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", UI_HOST, "--port", str(port)]


def serve_tensorboard(logdir: Path, port: int, quiet: bool) -> int:
    """TensorBoard over `logdir` (see run_server); quiet, its start-up lines are left out."""
    return run_server(tensorboard_command(logdir, port), dict(os.environ),
                      AfterStartUp(TENSORBOARD_STARTED) if quiet else AllBut(None))


TENSORBOARD_STARTED = "TensorBoard "  # its line "TensorBoard 2.21.0 at http://...  (Press CTRL+C to quit)"


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


def open_when_serving(page: str, probe: str) -> None:
    """Open `page` in the user's browser once the server answers at `probe` (run beside the server)."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(probe, timeout=2):
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
        if options.tensorboard:
            raise SystemExit(_tensorboard(tracking, uri, options))
        page = experiment_page(uri, _experiment_id(tracking, uri), options.port)
        if uri.startswith(("http://", "https://")):
            print(f"tracking=server: the MLflow server at {uri} is the UI; experiment {tracking.experiment}: {page}")
            if options.open_browser:
                webbrowser.open(page)
            return
        print(f"MLflow UI, experiment {tracking.experiment} (Ctrl-C stops it): {page}", flush=True)
        if options.open_browser:
            _open_when_serving(page, f"http://{UI_HOST}:{options.port}/health")
        with port_noted(ui_port_file(uri), options.port):
            code = serve(uri, options.port, quiet=os.environ.get("PIPELINE_DEBUG") != "1")
    raise SystemExit(code)


def _open_when_serving(page: str, probe: str) -> None:
    """A helper process, beside the server."""
    subprocess.Popen([sys.executable, "-c", "import sys; from pipeline.ui import open_when_serving; "
                      "open_when_serving(*sys.argv[1:])", page, probe])


def _tensorboard(tracking: MlflowTracking, uri: str, options: UiOptions) -> int:
    """TensorBoard over the chosen runs' logs, fetched into a temporary folder (removed when it stops)."""
    from mlflow import MlflowClient
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    from pipeline.tracking.tensorboard_runs import fetch_logs, select_runs

    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")  # one line, the link: no bars
    client = MlflowClient(uri)
    selection = select_runs(client, tracking, uri, options.target)
    with tempfile.TemporaryDirectory(prefix="kerastrack-tensorboard-") as folder:
        names = fetch_logs(client, selection, Path(folder))
        page = f"http://{UI_HOST}:{options.port}/"
        print(f"TensorBoard, {selection.description}, {len(names)} run(s) with logs (Ctrl-C stops it): {page}",
              flush=True)
        if options.open_browser:
            _open_when_serving(page, page)
        return serve_tensorboard(Path(folder), options.port, quiet=os.environ.get("PIPELINE_DEBUG") != "1")


def _close_dead_runs(tracking: MlflowTracking, uri: str) -> None:
    from mlflow import MlflowClient

    from pipeline.tracking.heartbeat import close_dead_runs

    close_dead_runs(MlflowClient(uri), tracking)


def _experiment_id(tracking: MlflowTracking, uri: str) -> str:
    """The experiment's id, created now if no run made it yet, so the printed link works from the start."""
    from mlflow import MlflowClient

    from pipeline.tracking.runs import experiment_id

    return experiment_id(MlflowClient(uri), tracking, uri)


entry = cli.process_entry(main)

if __name__ == "__main__":
    entry()
