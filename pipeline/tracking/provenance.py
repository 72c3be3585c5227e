"""Tags that say where a run came from: overrides, git commit, library versions, trainer, data."""

from __future__ import annotations

import getpass
import os
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

from pipeline.config import PROJECT_ROOT, Settings
from pipeline.credentials import USERNAME_VARIABLE


def run_tags(settings: Settings, overrides: Sequence[str], output_dir: Path) -> dict[str, str]:
    tags = {
        "overrides": " ".join(overrides),
        "trainer": settings.trainer.name,
        "data": settings.data.name,
        "model": settings.model.name,
        "optimizer": settings.optimizer.name,
        "tensorflow_version": version("tensorflow"),
        "keras_version": version("keras"),
        "output_dir": str(output_dir),
        "mlflow.user": os.environ.get(USERNAME_VARIABLE) or getpass.getuser(),  # a team server's login first
        "mlflow.source.name": "pipeline.run",
    }
    commit = git_commit(PROJECT_ROOT)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def git_commit(root: Path) -> str | None:
    """HEAD's commit read from .git's files: no git process, and None outside a repository or before a commit."""
    git_dir = root / ".git"
    try:
        if git_dir.is_file():  # a worktree: ".git" names the real folder
            git_dir = (root / git_dir.read_text().strip().removeprefix("gitdir: ")).resolve()
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head  # detached HEAD
        ref = head.removeprefix("ref: ")
        common_dir = git_dir
        if (git_dir / "commondir").exists():
            common_dir = git_dir / (git_dir / "commondir").read_text().strip()
        for folder in (git_dir, common_dir):
            if (folder / ref).exists():
                return (folder / ref).read_text().strip()
        packed = common_dir / "packed-refs"
        for line in packed.read_text().splitlines() if packed.exists() else []:
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        return None
    return None
