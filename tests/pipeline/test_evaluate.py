"""`python -m pipeline.evaluate`: a logged model evaluated again gives the run's own test metrics, recorded."""

from __future__ import annotations

import pytest

from pipeline.compose import compose_config, validate
from pipeline.errors import PipelineError
from pipeline.evaluate import main, split_model_uri
from tests.conftest import QUICK
from tests.mlflow_fixtures import new_store


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mlflow_template_db):
    from pipeline.core import RunOptions, run_pipeline

    folder = tmp_path_factory.mktemp("evaluate")
    store = new_store(folder, mlflow_template_db)
    overrides = [*QUICK, "trainer.epochs=1", store.override, f"output_dir={folder / 'out'}",
                 "tracking.register_as=digits-eval"]
    result = run_pipeline(validate(compose_config(overrides)), RunOptions(overrides=overrides))
    (output,) = store.client().get_run(result.run_id).outputs.model_outputs
    return store, result, output.model_id


@pytest.mark.parametrize("uri_of", [lambda run_id, model_id: f"models:/{model_id}",
                                    lambda run_id, model_id: "models:/digits-eval/1",
                                    lambda run_id, model_id: f"runs:/{run_id}/model"])
def test_evaluating_a_logged_model_reproduces_and_records_its_test_metrics(trained, capsys, uri_of):
    store, result, model_id = trained
    model_uri = uri_of(result.run_id, model_id)
    main([f"model={model_uri}", store.override, *QUICK])
    printed = capsys.readouterr().out
    assert f"Test metrics of {model_uri}:" in printed and "test_accuracy" in printed
    evaluation = store.runs()[0]
    assert evaluation.info.run_id != result.run_id and evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["evaluated_model"] == model_uri
    for name in ("test_loss", "test_accuracy", "test_f1_macro"):
        assert evaluation.data.metrics[name] == pytest.approx(result.test_metrics[name], abs=1e-6)
    assert [dataset.dataset.name for dataset in evaluation.inputs.dataset_inputs] == ["digits-test"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        ([], "model=<URI>: give exactly one model"),
        (["model=mlp"], "model=mlp: not a model URI; use models:/"),
        (["model=models:/no-such-model/1"], "model=models:/no-such-model/1: cannot find that model"),
        (["model=runs:/0123456789abcdef0123456789abcdef/model"], "model=runs:/0123456789abcdef0123456789abcdef/model: "
                                                                  "cannot find that model"),
        (["model=models:/digits-eval/1", "tracking=none"], "tracking=none: the model is looked up in MLflow"),
        (["model=models:/digits-eval/1", "data=npz", "data.path=/nonexistent.npz"], "/nonexistent.npz"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained, capsys, arguments, message):
    store, _, _ = trained
    runs_before = len(store.runs())
    extra = [] if "tracking=none" in arguments else [store.override]
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, *extra])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error, error
    assert len(store.runs()) == runs_before


def test_split_model_uri_keeps_the_other_overrides():
    assert split_model_uri(["data=digits", "model=models:/m-1", "seed=3"]) == ("models:/m-1", ["data=digits", "seed=3"])
    with pytest.raises(PipelineError, match="give exactly one model"):
        split_model_uri(["model=models:/a/1", "model=models:/b/1"])


def test_a_model_trained_on_an_image_folder_is_evaluated_on_the_folder_again(mlflow_store, tmp_path, capsys):
    from pipeline.core import RunOptions, run_pipeline
    from tests.pipeline.test_inputs import photo_folder

    root = photo_folder(tmp_path / "photos")
    data = ["data=images", f"data.path={root}", "data.color_mode=rgb", "data.image_size=[20,20]", "data.cache=none"]
    overrides = [*QUICK, *data, "model=small_cnn", mlflow_store.override, f"output_dir={tmp_path / 'out'}"]
    result = run_pipeline(validate(compose_config(overrides)), RunOptions(overrides=overrides))

    main([f"model=models:/{result.model_id}", mlflow_store.override, *data])

    evaluation = mlflow_store.runs()[0]
    assert evaluation.info.run_id != result.run_id and evaluation.info.status == "FINISHED"
    for name in ("test_loss", "test_accuracy", "test_f1_macro"):
        assert evaluation.data.metrics[name] == pytest.approx(result.test_metrics[name], abs=1e-6)
    assert [dataset.dataset.name for dataset in evaluation.inputs.dataset_inputs] == ["images-test"]
