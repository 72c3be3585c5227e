"""`python -m pipeline.ui` for real: one line, its link, which lists a multirun's parent with its children in a
headless browser, a child's page showing val_accuracy (screenshots stay in the test's temp folder); runs' links on
its store carry its port while it serves. `--tensorboard`: the chosen runs' logs fetched, named as in MLflow, with
their HParams, and TensorBoard showing a multirun's two runs' scalars in the browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from tensorboard.plugins.hparams import plugin_data_pb2

from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from pipeline.tracking.links import UI_PORT, experiment_page
from pipeline.ui import TENSORBOARD_PORT, UiOptions, split_options
from tests.conftest import QUICK
from tests.mlflow_fixtures import new_store
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


@pytest.mark.slow
def test_the_server_ends_with_a_ui_killed_with_sigkill(mlflow_store):
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "pipeline.ui", "--port", str(port), mlflow_store.override],
                          cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ui.stdout.readline()
        wait_until_healthy(f"http://127.0.0.1:{port}", ui)
    finally:
        ui.kill()  # kill -9: no handler of the UI's runs
        ui.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
        except OSError:  # nothing listens there any more
            return
        time.sleep(0.5)
    raise AssertionError(f"the MLflow server still answers on port {port} 30 s after its UI was killed")


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


def test_tensorboard_and_its_target_are_options_and_the_rest_overrides():
    assert split_options(["--tensorboard"]) == UiOptions(TENSORBOARD_PORT, False, [], True, None)
    assert split_options(["--tensorboard", "lr-study", "tracking.uri=sqlite:////x.db"]) == UiOptions(
        TENSORBOARD_PORT, False, ["tracking.uri=sqlite:////x.db"], True, "lr-study")
    assert split_options(["--tensorboard", "tracking=server", "--port", "7000"]) == UiOptions(
        7000, False, ["tracking=server"], True, None)
    assert split_options(["--open", "--tensorboard", "--port=7001", "kerastrack"]) == UiOptions(
        7001, True, [], True, "kerastrack")


@pytest.mark.parametrize("target, expected", [
    ("no-such-study", "error: --tensorboard no-such-study: no run id, sweep study or experiment of that name in "),
    ("0123456789abcdef0123456789abcdef", "error: --tensorboard 0123456789abcdef0123456789abcdef: no such run in "),
    (None, "error: --tensorboard: no TensorBoard logs in experiment kerastrack (1 run(s)); runs record them with "
           "tracking.tensorboard=true"),
])
def test_tensorboard_over_an_unknown_run_or_study_or_no_logs_is_one_line_and_exit_2(mlflow_store, target, expected):
    client = mlflow_store.client()
    client.set_terminated(client.create_run(client.create_experiment("kerastrack")).info.run_id)  # no logs
    result = subprocess.run([sys.executable, "-m", "pipeline.ui", "--tensorboard", *filter(None, [target]),
                             mlflow_store.override], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(expected), (
        result.stderr)
    assert result.stdout == ""


def write_logs(folder: Path, loss: float) -> None:
    import tensorflow as tf

    for subfolder in ("train", "validation"):
        with tf.summary.create_file_writer(str(folder / subfolder)).as_default():
            tf.summary.scalar("epoch_loss", loss, step=1)


def test_a_studys_trials_are_fetched_one_folder_per_run_name_with_their_hparams(mlflow_store, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    from pipeline.compose import compose_config, validate
    from pipeline.tracking.runs import STUDY_TAG
    from pipeline.tracking.tensorboard_runs import fetch_logs, select_runs

    client = mlflow_store.client()
    experiment = client.create_experiment("kerastrack")
    parent = client.create_run(experiment, tags={STUDY_TAG: "lr-study"}, run_name="sweep-lr-study").info.run_id
    for number, learning_rate in enumerate((0.1, 0.01)):
        trial = client.create_run(experiment, run_name=f"mlp-sgd-lr{learning_rate}",
                                  tags={STUDY_TAG: "lr-study", MLFLOW_PARENT_RUN_ID: parent}).info.run_id
        client.log_param(trial, "optimizer.learning_rate", learning_rate)
        client.log_param(trial, "model.name", "mlp")
        client.log_metric(trial, "test_accuracy", 0.5 + number / 10)
        write_logs(tmp_path / trial, loss=1.0 + number)
        client.log_artifacts(trial, str(tmp_path / trial), "tensorboard")
    client.create_run(experiment, run_name="another run")  # not the study's
    tracking = validate(compose_config([mlflow_store.override])).tracking
    selection = select_runs(client, tracking, mlflow_store.uri, "lr-study")
    assert selection.description == "the trials of sweep study lr-study" and len(selection.runs) == 2
    folder = tmp_path / "fetched"
    folder.mkdir()
    assert fetch_logs(client, selection, folder) == ["mlp-sgd-lr0.1", "mlp-sgd-lr0.01"]
    for name, loss in (("mlp-sgd-lr0.1", 1.0), ("mlp-sgd-lr0.01", 2.0)):
        validation = EventAccumulator(str(folder / name / "validation"))
        validation.Reload()
        assert [(event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
                for event in validation.Tensors("epoch_loss")] == [(1, loss)]
        session = EventAccumulator(str(folder / name))
        session.Reload()
        hparams = session.PluginTagToContent("hparams")
        assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= hparams.keys()
        start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"]).session_start_info
        assert list(start.hparams) == ["optimizer.learning_rate"]  # the one param that differs
        assert start.hparams["optimizer.learning_rate"].number_value == float(name.removeprefix("mlp-sgd-lr"))
        assert [event.step for event in session.Tensors("test_accuracy")] == [0]


@pytest.fixture(scope="module")
def multirun_with_tensorboard(tmp_path_factory, mlflow_template_db):
    """A 2-job multirun that logs TensorBoard; its store, parent run and children."""
    folder = tmp_path_factory.mktemp("tensorboard-multirun")
    store = new_store(folder, mlflow_template_db)
    multirun = subprocess.run([sys.executable, "-m", "pipeline.run", "-m", "optimizer=sgd,adam", *QUICK,
                               "tracking.tensorboard=true", "tracking.log_model=false", "tracking.system_metrics=false",
                               store.override, f"hydra.sweep.dir={folder / 'multirun'}"],
                              cwd=PROJECT_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
                              text=True, timeout=600)
    assert multirun.returncode == 0, multirun.stderr
    runs = store.runs()
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    return store, parent, [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_tensorboard_over_a_multirun_shows_both_runs_scalars_in_the_browser(multirun_with_tensorboard, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    store, parent, children = multirun_with_tensorboard
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pipeline.ui", "--tensorboard", parent.info.run_id,
                               "--port", str(port), store.override], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first_line = server.stdout.readline()
        assert first_line.startswith(f"TensorBoard, the runs of {parent.info.run_name}, 2 run(s) with logs"), (
            first_line)
        link = first_line.rsplit(": ", 1)[1].strip()
        assert link == f"http://127.0.0.1:{port}/"
        wait_until_answering(f"{link}data/runs", server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(f"{link}#scalars")
                for child in children:
                    for subfolder in ("train", "validation"):
                        expect(page.get_by_text(f"{child.info.run_name}/{subfolder}").first).to_be_visible(
                            timeout=60_000)
                        points = page.request.get(f"{link}data/plugin/scalars/scalars?tag=epoch_loss&run="
                                                  f"{child.info.run_name}/{subfolder}").json()
                        assert [step for _, step, _ in points] == [1, 2]  # QUICK: 2 epochs
                expect(page.get_by_text("epoch_loss").first).to_be_visible(timeout=60_000)
                page.screenshot(path=tmp_path / "tensorboard.png")
                page.goto(f"{link}#hparams")
                expect(page.get_by_text("optimizer.name").first).to_be_visible(timeout=60_000)
                page.screenshot(path=tmp_path / "hparams.png")
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            rest, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    assert rest == "", rest  # one line, the link: no TensorFlow or TensorBoard start-up lines
    print(f"screenshots: {tmp_path / 'tensorboard.png'} {tmp_path / 'hparams.png'}")


def wait_until_answering(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout_s} s")
