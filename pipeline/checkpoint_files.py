"""The names a run's checkpoints go by, in its output folder and in its MLflow artifacts, and how a save of them
counts as one. No Keras: the tracking side (closing a dead run, finding a run to resume before TensorFlow loads)
reads them too; `checkpoints` writes them.

A save writes each file under its temporary name, then renames last.keras first (the moment the save counts), then
best.keras and state.json: a process killed anywhere in between (SIGKILL too) leaves files that `settle` turns back
into one checkpoint, never a last.keras a save ahead of its state."""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = "checkpoints"
BEST = "best.keras"
LAST = "last.keras"
STATE = "state.json"


def temporary(folder: Path, name: str) -> Path:
    """Where a save writes `name` before it counts (hidden, so that nothing takes it for a checkpoint)."""
    stem, suffix = os.path.splitext(name)
    return folder / f".{stem}.tmp{suffix}"


def commit(folder: Path) -> None:
    """Count a save whose files are all written under their temporary names."""
    os.replace(temporary(folder, LAST), folder / LAST)
    _rename_the_rest(folder)


def settle(folder: Path) -> None:
    """Finish or undo a save that a killed process left halfway: with last.keras's temporary file still there the
    save never counted and its files go; without it, the rest of the save is renamed into place."""
    if temporary(folder, LAST).exists():
        for name in (LAST, BEST, STATE):
            temporary(folder, name).unlink(missing_ok=True)
    else:
        _rename_the_rest(folder)


def _rename_the_rest(folder: Path) -> None:
    for name in (BEST, STATE):  # the state last: it never runs ahead of the best file it records
        if temporary(folder, name).exists():
            os.replace(temporary(folder, name), folder / name)
