"""UI links land on the Model-training view: the local UI of pipeline.ui, or a tracking server itself."""

from pipeline.config import MlflowTracking
from pipeline.tracking.links import experiment_page, run_page, run_page_of


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
