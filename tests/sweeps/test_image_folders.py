"""A sweep over a streamed image folder: three trials with pruning on, searching an augmentation argument."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.sweep import run_sweep
from tests.pipeline.test_inputs import photo_folder
from tests.sweeps.conftest import runs_of, study_of


def test_a_sweep_searches_the_rotation_of_a_streamed_folder(sweep_overrides, tmp_path: Path):
    root = photo_folder(tmp_path / "photos", per_class=10)
    overrides = [
        *(o for o in sweep_overrides if not o.startswith("model.")),
        "sweep.n_trials=3", "sweep.pruner=median", "sweep.pruner_startup_trials=1",
        "data=images", f"data.path={root}", "data.color_mode=rgb", "data.image_size=[20,20]", "data.cache=none",
        "model=small_cnn", "trainer.batch_size=8",
        "data.augment=[{RandomFlip: {mode: horizontal}},{RandomRotation: {factor: 0.1}}]",
        "~sweep.params.optimizer", "~sweep.params.momentum", "~sweep.params.learning_rate",
        "+sweep.params.rotation={key: data.augment.1.RandomRotation.factor, type: float, low: 0.0, high: 0.3}",
    ]
    summary = run_sweep(overrides)

    study = study_of(overrides)
    factors = [trial.params["data.augment.1.RandomRotation.factor"] for trial in study.trials]
    assert len(study.trials) == 3 and factors[0] == pytest.approx(0.1)  # trial 0 is the command's own value
    assert len(set(factors)) == 3
    _, _, children = runs_of(overrides)
    for number, child in children.items():
        assert child.data.params["data.augment"].endswith(f"{{'factor': {factors[number]}}}}}]")
        assert {dataset.dataset.name for dataset in child.inputs.dataset_inputs} == {
            "images-train", "images-validation", "images-test"}
    assert summary.best_number in children
