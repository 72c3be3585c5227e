"""The Optuna study: storage, sampler, pruner, resume, and claiming trials so a study gets exactly n_trials.

Storage: by default one journal file per study, `mlruns/optuna/<study_name>.log` (safe for several
worker processes on one machine); a `*.log` path chooses another journal file; `postgresql://...`
lets workers on several machines share the study; `sqlite:///...` is accepted for a single worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ContextManager

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from pipeline.config import PROJECT_ROOT
from pipeline.errors import PipelineError
from sweeps.heartbeat import RETRY_OF
from sweeps.settings import SweepSettings

DEFAULT_STORAGE_DIR = PROJECT_ROOT / "mlruns" / "optuna"


def storage_location(settings: SweepSettings) -> str:
    """The journal file path or database URL the study lives in."""
    if settings.storage is None:
        return str(DEFAULT_STORAGE_DIR / f"{settings.study_name}.log")
    if settings.storage.startswith(("postgresql://", "postgresql+", "sqlite:///")):
        if settings.storage.startswith("sqlite") and settings.n_workers > 1:
            raise PipelineError(
                f"sweep.storage={settings.storage}: SQLite is not safe for {settings.n_workers} concurrent "
                "workers; leave sweep.storage=null (a journal file) or use postgresql://"
            )
        return settings.storage
    if "://" in settings.storage or not settings.storage.endswith(".log"):
        raise PipelineError(
            f"sweep.storage={settings.storage}: expected null, a journal file path ending in .log, "
            "postgresql://user:password@host/db or sqlite:///path.db"
        )
    return str(Path(settings.storage).expanduser().resolve())


def is_journal(location: str) -> bool:
    return "://" not in location


def database_url(location: str) -> str:
    """SQLAlchemy 2.1 reads postgresql:// as psycopg 3; the project ships psycopg2 (the `postgres` extra)."""
    return location.replace("postgresql://", "postgresql+psycopg2://", 1)


def make_storage(location: str) -> BaseStorage:
    if is_journal(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(location, lock_obj=JournalFileOpenLock(location)))
    return RDBStorage(database_url(location), engine_kwargs={"pool_pre_ping": True})


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the kernel if the process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ClaimLock:
    """A lock shared by every worker of a study (all machines), around "count trials, then ask".

    Journal and SQLite: an flock on a file next to the storage. PostgreSQL: a session advisory lock,
    which the server releases when a killed worker's connection drops.
    """

    def __init__(self, location: str, study_name: str):
        self.location = location
        self.key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        self._engine = sqlalchemy.create_engine(database_url(location)) if location.startswith("postgresql") else None

    def __call__(self) -> ContextManager[None]:
        if self._engine is not None:
            return self._advisory_lock()
        path = self.location if is_journal(self.location) else self.location.removeprefix("sqlite:///")
        return _file_lock(f"{path}.claim")

    @contextlib.contextmanager
    def _advisory_lock(self) -> Iterator[None]:
        assert self._engine is not None
        with self._engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                connection.commit()


def startup_trials(settings: SweepSettings) -> int:
    """Random trials before TPE (or the GP) models the results: `auto` is an eighth of the budget, 3 to 10
    (see conf/sweep/)."""
    if settings.startup_trials != "auto":
        return settings.startup_trials
    return min(10, max(3, round(settings.n_trials / 8)))


def make_sampler(settings: SweepSettings, seed: int) -> optuna.samplers.BaseSampler:
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "cmaes":
        # CMA-ES handles float/int parameters; the optimizer choice falls back to random sampling.
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=startup_trials(settings), warn_independent_sampling=False
        )
    if settings.sampler == "gp":
        # Gaussian-process Bayesian optimisation, made for small budgets; conditional parameters (SGD's momentum)
        # fall back to random sampling.
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=startup_trials(settings), warn_independent_sampling=False
        )
    # multivariate + group: an optimizer and its learning rate are modelled jointly, SGD's momentum in the SGD group;
    # constant_liar: running trials count as bad guesses, so parallel workers do not sample the same point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group`, once per worker
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials(settings), multivariate=True, group=True, constant_liar=True,
        )


def make_pruner(settings: SweepSettings, epochs: int) -> optuna.pruners.BasePruner:
    if settings.is_multi_objective:  # Optuna prunes single-objective studies only
        return optuna.pruners.NopPruner()
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.pruner_startup_trials, n_warmup_steps=settings.pruner_warmup_epochs
        )
    if settings.pruner == "wilcoxon":  # across folds: a trial's folds against the best trial's, pairwise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # nothing a user can change
            return optuna.pruners.WilcoxonPruner(p_threshold=settings.pruner_p_threshold)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def worker_seed(settings: SweepSettings, location: str, worker_index: int, trials_so_far: int) -> int:
    """Distinct sampler seeds per worker, per resume and (with a shared database) per process.

    A fresh single-worker study on a journal file uses `sweep.seed` as is, so it is reproducible.
    """
    machine = f"{socket.gethostname()}/{os.getpid()}" if not is_journal(location) else ""
    if not machine and worker_index == 0 and trials_so_far == 0:
        return settings.seed
    digest = hashlib.sha256(f"{settings.seed}/{machine}/{worker_index}/{trials_so_far}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def open_study(
    settings: SweepSettings, storage: BaseStorage, sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it when the name exists (resume); the directions must not change."""
    directions = [goal.direction for goal in settings.goals]
    study = optuna.create_study(
        study_name=settings.study_name, storage=storage, sampler=sampler, pruner=pruner,
        directions=directions, load_if_exists=True,
    )
    existing = [direction.name.lower() for direction in study.directions]
    if existing != directions:
        key = "sweep.objectives" if settings.is_multi_objective else "sweep.objective.direction"
        raise PipelineError(
            f"{key}={' '.join(directions)}: study {settings.study_name!r} already exists with direction "
            f"{' '.join(existing)}; pick another sweep.study_name"
        )
    return study


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards n_trials: all but queued (WAITING) ones and dead workers' trials run again."""
    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs[RETRY_OF] for trial in trials if RETRY_OF in trial.user_attrs}
    return sum(trial.state != TrialState.WAITING and trial.number not in retried for trial in trials)


StopCheck = Callable[[optuna.Study], "str | None"]  # why the study stopped itself (sweeps/stopping.py), or None


def is_done(study: optuna.Study, n_trials: int, deadline: float | None, stopped: StopCheck | None = None) -> bool:
    """No more trials to claim: the study holds n_trials, sweep.timeout's deadline has passed, or it stopped itself."""
    return (counted_trials(study) >= n_trials or (deadline is not None and time.time() >= deadline)
            or (stopped is not None and stopped(study) is not None))


def claim_trial(
    study: optuna.Study, n_trials: int, lock: ClaimLock, deadline: float | None,
    fail_stale_trials: Callable[[optuna.Study], object], stopped: StopCheck | None = None,
) -> optuna.Trial | None:
    """Start the next trial (queued ones first), or None when the study holds n_trials, the deadline has passed or
    the study stopped itself (`stopped`).

    Atomic across all workers; dead workers' trials are failed (and queued again) first, so their retries
    are claimed before anything new is sampled.
    """
    with lock():
        fail_stale_trials(study)
        if is_done(study, n_trials, deadline, stopped):
            return None
        return study.ask()
