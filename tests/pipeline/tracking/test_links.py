"""UI links land on the Model-training view: the local UI of pipeline.ui (at the port a live one noted), or a
tracking server itself."""

import subprocess
import sys

from pipeline.config import PROJECT_ROOT, MlflowTracking
from pipeline.tracking.links import UI_PORT, experiment_page, run_page, run_page_of, ui_port_file
from tests.ports import free_port


def test_links_open_the_model_training_view():
    assert experiment_page("sqlite:////x/mlflow.db", "3") == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning")
    assert experiment_page("sqlite:////x/mlflow.db", "3", port=5123).startswith("http://127.0.0.1:5123/#/")
    assert run_page("http://mlflow.lab:5000/", "3", "abc") == (
        "http://mlflow.lab:5000/#/experiments/3/runs/abc?workflowType=machine_learning")


def test_a_runs_page_is_found_from_its_id(mlflow_store):
    client = mlflow_store.client()
    experiment = client.create_experiment("links")
    run = client.create_run(experiment)
    tracking = MlflowTracking(name="local", uri=mlflow_store.uri, experiment="links")
    assert run_page_of(tracking, run.info.run_id) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run.info.run_id}?workflowType=machine_learning")


def _noting_ui(store, port: int) -> subprocess.Popen:
    """A process that notes `port` beside the store as pipeline.ui does and listens there, until killed."""
    script = (
        "import socket, sys, time\n"
        "from pathlib import Path\n"
        "from pipeline.ui import port_noted\n"
        "listener = socket.create_server(('127.0.0.1', int(sys.argv[2])))\n"
        "with port_noted(Path(sys.argv[1]), int(sys.argv[2])):\n"
        "    print('serving', flush=True)\n"
        "    time.sleep(600)\n"
    )
    return subprocess.Popen([sys.executable, "-c", script, str(ui_port_file(store.uri)), str(port)],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)


def test_links_carry_the_port_a_live_ui_noted_and_ignore_the_note_of_a_killed_one(mlflow_store):
    port = free_port()
    ui = _noting_ui(mlflow_store, port)
    try:
        assert ui.stdout.readline() == "serving\n"
        assert experiment_page(mlflow_store.uri, "3").startswith(f"http://127.0.0.1:{port}/#/")
    finally:
        ui.kill()  # kill -9: its note stays behind
        ui.wait()
    assert ui_port_file(mlflow_store.uri).read_text() == str(port)
    assert experiment_page(mlflow_store.uri, "3").startswith(f"http://127.0.0.1:{UI_PORT}/#/")
