"""Where a run came from: its name, params and tags, and the git commit read from .git's files."""

from __future__ import annotations

import subprocess

from pipeline.config import PROJECT_ROOT
from tests.pipeline.tracking.conftest import EPOCHS


def test_run_is_finished_with_a_readable_name_params_and_tags(finished):
    store, result, run = finished
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"mlp-adam-lr0.001-{result.run_id[:6]}"
    params = run.data.params
    assert params["optimizer.learning_rate"] == "0.001"
    assert params["model.hidden_units"] == str(result.settings.model.hidden_units)
    assert params["trainer.epochs"] == str(EPOCHS)
    assert params["trainer.steps_per_execution"] == "auto"
    assert "resume" not in params and "output_dir" not in params
    tags = run.data.tags
    assert "trainer.epochs=2" in tags["overrides"] and tags["trainer"] == "fit" and tags["data"] == "digits"
    assert tags["steps_per_execution"] == "1"  # auto, resolved: 2 epochs of 13 steps are too short to probe
    assert tags["devices"] and tags["tensorflow_version"] and tags["keras_version"] and tags["sweep"] == "none"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if head.returncode == 0:  # CI and developers run from a git checkout; an unpacked sdist has no commit to tag
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()


def test_git_commit_is_read_from_loose_packed_and_detached_heads(tmp_path):
    from pipeline.tracking.provenance import git_commit

    assert git_commit(tmp_path) is None
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert git_commit(tmp_path) is None  # no commit yet
    (git / "packed-refs").write_text(f"# pack-refs\n{'b' * 40} refs/heads/main\n")
    assert git_commit(tmp_path) == "b" * 40
    (git / "refs" / "heads" / "main").write_text("a" * 40 + "\n")
    assert git_commit(tmp_path) == "a" * 40
    (git / "HEAD").write_text("c" * 40 + "\n")
    assert git_commit(tmp_path) == "c" * 40
