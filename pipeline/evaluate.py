"""`python -m pipeline.evaluate model=<models:/… or runs:/…> [data=… other overrides]`: evaluate a logged model.

Loads the model from MLflow, evaluates it on the configured data's test split, prints the metrics and records
them as a new MLflow run tagged with the model's URI.
"""

from __future__ import annotations

import sys

from omegaconf import OmegaConf

from pipeline import cli
from pipeline.compose import compose_config, validate
from pipeline.config import MlflowTracking, Settings
from pipeline.errors import PipelineError
from pipeline.tracking.links import run_page_with_hint

URI_SCHEMES = ("models:/", "runs:/")
USAGE = """usage: python -m pipeline.evaluate model=<URI> [key=value ...] [--cfg job]

Evaluates a logged model on the test split of the configured data (default data=digits). URIs:
  models:/<registered name>/<version>, models:/<model id> (MLflow 3 LoggedModel), runs:/<run id>/model
Examples:
  python -m pipeline.evaluate model=models:/digits-mlp/1
  python -m pipeline.evaluate model=runs:/<run id>/model data=digits data.test_fraction=0.3"""


def split_model_uri(arguments: list[str]) -> tuple[str, list[str]]:
    """`model=<URI>` is ours, not the Hydra `model` group; the rest are config overrides."""
    uris = [argument.removeprefix("model=") for argument in arguments if argument.startswith("model=")]
    if len(uris) != 1:
        raise PipelineError("model=<URI>: give exactly one model, e.g. model=models:/<name>/<version> "
                            "or model=runs:/<run id>/model")
    if not uris[0].startswith(URI_SCHEMES):
        raise PipelineError(f"model={uris[0]}: not a model URI; use models:/<name>/<version>, models:/<model id> "
                            "or runs:/<run id>/model")
    return uris[0], [argument for argument in arguments if not argument.startswith("model=")]


def evaluate(model_uri: str, settings: Settings) -> tuple[dict[str, float], str]:
    """The test metrics and the id of the MLflow run recording them."""
    from pipeline.data import load_data
    from pipeline.scoring import evaluate_model
    from pipeline.tracking import tracking_uri
    from pipeline.tracking.evaluation_runs import record_evaluation
    from pipeline.tracking.lifecycle import process_tracking_uri
    from pipeline.tracking.logged_models import load_logged_model
    from pipeline.tracking.store import check_store

    tracking = settings.tracking
    if not isinstance(tracking, MlflowTracking):
        raise PipelineError("tracking=none: the model is looked up in MLflow; use tracking=local or tracking=server")
    uri = tracking_uri(tracking)
    check_store(uri)  # an unreachable server fails now, not after the evaluation
    data = load_data(settings.data)
    with process_tracking_uri(uri):  # where models:/ and runs:/ URIs resolve
        model, model_id = load_logged_model(model_uri)
    if tuple(model.input_shape[1:]) != data.input_shape:
        raise PipelineError(f"model={model_uri}: takes images shaped {tuple(model.input_shape[1:])} but "
                            f"data={settings.data.name} has {data.input_shape}; pick the data it was trained on")
    metrics = evaluate_model(model, data).metrics
    run_id = record_evaluation(tracking, model_uri=model_uri, model_id=model_id, data=data,
                               data_params=settings.data.model_dump(mode="json"), metrics=metrics)
    return metrics, run_id


def main(argv: list[str] | None = None) -> None:
    with cli.reported_errors():
        command = cli.parse_args(sys.argv[1:] if argv is None else argv, USAGE)
        model_uri, overrides = split_model_uri(command.overrides)
        cfg = compose_config(overrides)
        if command.show_config:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return
        settings = validate(cfg)  # before TensorFlow is imported
        metrics, run_id = evaluate(model_uri, settings)
        print(f"Test metrics of {model_uri}:")
        for name, value in metrics.items():
            print(f"  {name:<16} {value:.4f}")
        assert isinstance(settings.tracking, MlflowTracking)  # evaluate() refuses tracking=none
        print(f"MLflow run {run_id}: {run_page_with_hint(settings.tracking, run_id)}")


entry = cli.process_entry(main)

if __name__ == "__main__":
    entry()
