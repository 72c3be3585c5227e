"""Everything a sweep process (launcher or worker) sets up from the command line, in one object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from pipeline.config import MlflowTracking, Settings
from pipeline.credentials import redact
from pipeline.errors import PipelineError
from sweeps import heartbeat
from sweeps import settings as sweep_settings
from sweeps.mlflow_runs import SweepRuns
from sweeps.objective_checks import check_models, check_objective, check_sampler
from sweeps.settings import SweepSettings, is_sweep_override
from sweeps.stopping import study_stop_reason
from sweeps.study import ClaimLock, make_storage, storage_location


@dataclass
class SweepContext:
    overrides: list[str]  # the whole command line, sweep.* included (worker processes get it too)
    pipeline_overrides: list[str]  # what passes through to every trial
    pipeline_settings: Settings  # every trial's config before its sampled values
    sweep_settings: SweepSettings  # the study: search space, sampler, storage, budget
    location: str
    storage: BaseStorage
    lock: ClaimLock
    runs: SweepRuns | None
    trials_dir: Path
    deadline: float | None = None  # no trial is claimed after it: sweep.timeout from when the launcher's workers start

    @classmethod
    def load(cls, overrides: list[str], deadline: float | None = None) -> "SweepContext":
        pipeline, settings = sweep_settings.load(overrides)
        check_objective(settings)
        check_sampler(settings)
        check_models(settings, pipeline)
        location = storage_location(settings)
        tracking = pipeline.tracking
        runs = SweepRuns(tracking, settings.study_name) if isinstance(tracking, MlflowTracking) else None
        lock = ClaimLock(location, settings.study_name)
        try:
            with lock():  # workers starting together would race to create the database tables
                storage = make_storage(location)
        except Exception as error:  # noqa: BLE001 - e.g. an unreachable database, in one line
            raise PipelineError(f"sweep.storage: cannot open {redact(location)} ({type(error).__name__}: "
                                f"{str(error).splitlines()[0]})") from None
        return cls(
            overrides=list(overrides),
            pipeline_overrides=[o for o in overrides if not is_sweep_override(o)],
            pipeline_settings=pipeline, sweep_settings=settings, location=location, storage=storage, lock=lock,
            runs=runs,
            trials_dir=Path(settings.trials_dir).expanduser().resolve(),
            deadline=deadline,
        )

    def stop_reason(self, study: optuna.Study) -> str | None:
        """Why the study stopped itself (sweep.stop), or None."""
        return study_stop_reason(study, self.sweep_settings.stop, self.sweep_settings.objective)

    def fail_stale_trials(self, study: optuna.Study) -> None:
        """Fail dead workers' trials, queue their retries and close their MLflow runs; under the claim lock."""
        settings = self.sweep_settings
        heartbeat.fail_stale_trials(study, settings.grace_period, settings.max_retries, self.close_stale_trial)

    def fail_stale_trials_locked(self, study: optuna.Study) -> None:
        with self.lock():
            self.fail_stale_trials(study)

    def close_stale_trial(self, trial: FrozenTrial) -> None:
        """What is done for a dead worker's trial once it is failed: its MLflow run is closed, if tracked."""
        if self.runs is not None:
            self.runs.close_stale_trial(trial)

