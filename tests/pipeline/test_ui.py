"""`python -m pipeline.ui` for real: one line, its link, which lists a multirun's parent with its children in a
headless browser, a child's page showing val_accuracy (screenshots stay in the test's temp folder); runs' links on
its store carry its port while it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from pipeline.tracking.links import UI_PORT, experiment_page
from pipeline.ui import UiOptions, split_options
from tests.conftest import QUICK
from tests.ports import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the MLflow UI did not answer at {url} in {timeout_s} s")


@pytest.fixture
def ui_with_a_multirun(mlflow_store, tmp_path):
    """A 2-job multirun in the store, and the UI serving it; yields the experiment link it printed and the runs."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    multirun = subprocess.run([sys.executable, "-m", "pipeline.run", "-m", "optimizer=sgd,adam", *QUICK,
                               "trainer.epochs=1", mlflow_store.override, f"hydra.sweep.dir={tmp_path / 'multirun'}"],
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert multirun.returncode == 0, multirun.stderr
    runs = mlflow_store.runs()
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.ui", "--port", str(port), mlflow_store.override],
                              cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        link = server.stdout.readline().split(": ", 1)[1].strip()
        wait_until_healthy(url, server)
        yield link, parent, children
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and any worker it started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_the_printed_link_lists_the_multirun_parent_with_its_children(ui_with_a_multirun, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    link, parent, children = ui_with_a_multirun
    assert link.endswith(f"/#/experiments/{parent.info.experiment_id}/runs?workflowType=machine_learning")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(link)
            expect(page.get_by_text(parent.info.run_name).first).to_be_visible(timeout=60_000)
            parent_row = page.get_by_role("row").filter(has_text=parent.info.run_name)
            parent_row.get_by_role("button").first.click()  # its children are folded under it
            for child in children:
                expect(page.get_by_text(child.info.run_name).first).to_be_visible(timeout=60_000)
            page.screenshot(path=tmp_path / "multirun.png")
            page.goto(f"{link.split('/#/')[0]}/#/experiments/{parent.info.experiment_id}/runs/"
                      f"{children[0].info.run_id}?workflowType=machine_learning")
            metric = page.get_by_text("val_accuracy").first
            expect(metric).to_be_visible(timeout=60_000)
            metric.scroll_into_view_if_needed()
            page.screenshot(path=tmp_path / "run_page.png")
        finally:
            browser.close()
    print(f"screenshots: {tmp_path / 'multirun.png'} {tmp_path / 'run_page.png'}")


@pytest.mark.slow
def test_open_shows_the_experiment_page_in_the_browser_once_the_server_answers(mlflow_store, tmp_path):
    opened = tmp_path / "opened"
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.ui", "--port", str(port), "--open",
                               mlflow_store.override],
                              cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True,
                              env={**os.environ, "BROWSER": f"sh -c 'echo \"%s\" > {opened}'"})  # webbrowser's hook
    try:
        first_line = server.stdout.readline()
        link = first_line.split(": ", 1)[1].strip()
        experiment = mlflow_store.client().get_experiment_by_name("kerastrack").experiment_id
        assert link == f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?workflowType=machine_learning"
        deadline = time.monotonic() + 90
        while not (opened.exists() and opened.read_text().strip()):
            assert server.poll() is None and time.monotonic() < deadline, server.communicate()
            time.sleep(0.3)
        assert opened.read_text().strip() == link
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert response.status == 200  # opened once the server answered
        assert experiment_page(mlflow_store.uri, experiment) == link  # what a run on this store links to
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        rest, _ = server.communicate(timeout=30)
    assert server.returncode == 130
    assert rest == "", first_line + rest  # one line, the link: no server chatter, starting or stopping
    assert experiment_page(mlflow_store.uri, experiment).startswith(f"http://127.0.0.1:{UI_PORT}/")  # UI gone


def test_ui_binds_localhost_and_checks_its_port():
    assert split_options(["--port", "5123", "tracking.uri=sqlite:////x.db"]) == UiOptions(
        5123, False, ["tracking.uri=sqlite:////x.db"])
    assert split_options(["--port=8080", "--open"]) == UiOptions(8080, True, [])
    assert split_options([]) == UiOptions(5000, False, [])
    for bad in (["--port", "http"], ["--port"], ["--port=70000"]):
        with pytest.raises(PipelineError, match=r"^--port .*: expected a port number from 1 to 65535$"):
            split_options(bad)


def test_ui_with_tracking_none_is_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "pipeline.ui", "tracking=none"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: tracking=none: there is no store to browse; "
                                     "use tracking=local or tracking.uri=...")


def test_the_ui_closes_the_stores_dead_runs_before_it_serves(mlflow_store):
    client = mlflow_store.client()
    ten_minutes_ago = int((time.time() - 600) * 1000)
    dead = client.create_run(client.create_experiment("kerastrack"), start_time=ten_minutes_ago).info.run_id
    server = subprocess.Popen([sys.executable, "-m", "pipeline.ui", "--port", str(free_port()), mlflow_store.override,
                               "tracking.stale_after=1m"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        closing, link = server.stdout.readline(), server.stdout.readline()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)
    assert closing.startswith("tracking: closed 1 run(s) of experiment kerastrack KILLED") and dead in closing
    assert link.startswith("MLflow UI, experiment kerastrack")
    assert client.get_run(dead).info.status == "KILLED"
