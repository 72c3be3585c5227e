"""A whole sweep as one function: check, open or resume the study, run the workers, report."""

from __future__ import annotations

import dataclasses
import os
import time

import optuna
from optuna.trial import TrialState

from pipeline import stop
from pipeline.credentials import redact
from pipeline.errors import PipelineError
from pipeline.tracking.heartbeat import Heartbeat, close_dead_runs_once
from pipeline.tracking.links import run_page_with_hint
from pipeline.tracking.runs import FINISHED, KILLED
from pipeline.worker_slots import plan_slots, visible_gpus
from sweeps.context import SweepContext
from sweeps.heartbeat import wait_for_running_trials
from sweeps.mlflow_runs import SweepRuns
from sweeps.pareto import best_trial
from sweeps.report import BASELINE_ATTR, SweepSummary, log_to_parent, summarize
from sweeps.settings import SweepSettings
from sweeps.space import baseline_values, check_space
from sweeps.study import counted_trials, is_done, open_study
from sweeps.trial_config import TrialConfigs
from sweeps.workers import REASON_ATTR, run_workers


def run_sweep(overrides: list[str]) -> SweepSummary:
    """Run the missing trials of the study (all of them the first time); PipelineError if none completed. A Ctrl-C
    waits for a safe point (pipeline.stop): the study's storage and the MLflow runs are never left half-written."""
    with stop.deferred():
        return _run_sweep(overrides)


def _run_sweep(overrides: list[str]) -> SweepSummary:
    sweep = SweepContext.load(overrides)
    settings = sweep.sweep_settings
    configs = TrialConfigs(sweep.pipeline_overrides)
    check_space(settings.params, configs)  # before any trial starts
    study = open_study(settings, sweep.storage)
    parent_run_id = None
    if sweep.runs:
        close_dead_runs_once(sweep.runs.client, sweep.runs.tracking, sweep.runs.uri)  # an in-process worker: not again
    with sweep.lock():
        sweep.fail_stale_trials(study)
        baseline = baseline_values(settings.params, configs.build({})) if settings.baseline else {}
        if baseline and not study.get_trials(deepcopy=False):  # a fresh study, not a resumed one
            study.enqueue_trial(baseline, user_attrs={BASELINE_ATTR: True})
        if sweep.runs:
            parent_run_id = sweep.runs.parent_run(study, _description(sweep))
    done = counted_trials(study)
    print(f"[sweep] study {settings.study_name} in {redact(sweep.location)}: {done} of {settings.n_trials} trials "
          f"exist; {max(0, settings.n_trials - done)} to run with {settings.n_workers} worker(s)", flush=True)
    if settings.is_multi_objective and settings.pruner != "none":
        print(f"[sweep] pruning is off: Optuna prunes single-objective studies only (sweep.pruner={settings.pruner} "
              "does not apply to sweep.objectives); every trial trains all its epochs", flush=True)
    if (stopped := sweep.stop_reason(study)) is not None:  # a resumed study under the same rule
        print(f"[sweep] study {settings.study_name} has stopped: {stopped}; no trial to run "
              "(change sweep.stop to go on)", flush=True)
    if sweep.runs and parent_run_id:
        page = run_page_with_hint(sweep.runs.tracking, parent_run_id)
        print(f"[sweep] MLflow parent run: {page}", flush=True)
    status = KILLED
    parent_alive = Heartbeat(sweep.runs.client, parent_run_id, sweep.runs.tracking.stale_after).start() if (
        sweep.runs and parent_run_id) else None
    try:
        stop.raise_if_requested()  # a Ctrl-C while the study and its parent run opened
        if settings.timeout is not None:  # counted from here: composing and opening the stores take seconds
            sweep = dataclasses.replace(sweep, deadline=time.time() + settings.timeout)
        slots = plan_slots(settings.n_workers, os.cpu_count() or 1, visible_gpus())
        # Again if, while waiting, a dead worker's trial was failed and queued again.
        while not is_done(study, settings.n_trials, sweep.deadline, sweep.stop_reason):
            run_workers(sweep, slots)
            wait_for_running_trials(study, settings.heartbeat_interval, lambda: sweep.fail_stale_trials_locked(study))
        status = FINISHED
    finally:
        summary = summarize(study, settings.params, sweep.pipeline_overrides, settings.goals, sweep.runs)
        summary = dataclasses.replace(summary, stopped=sweep.stop_reason(study))
        if sweep.runs and summary.front:
            sweep.runs.tag_front(study.get_trials(deepcopy=False), {trial.number for trial in summary.front})
        if sweep.runs and status == FINISHED and summary.best_number is not None:
            summary = _settle_models(sweep.runs, sweep.sweep_settings, study, summary)
        if parent_alive:
            parent_alive.stop()
        if sweep.runs and parent_run_id:
            log_to_parent(sweep.runs, parent_run_id, summary, study)
            sweep.runs.end_parent(parent_run_id, status)
    if summary.best_number is None and summary.states.get(TrialState.COMPLETE.name):
        raise PipelineError(f"no trial of study {settings.study_name} met sweep.constraints "
                            f"({', '.join(f'{c.metric} <= {c.max:g}' for c in settings.constraints)}); "
                            "see the trials' `infeasible` reasons, or loosen the constraints or the search ranges")
    if summary.best_number is None:
        raise PipelineError(f"no trial of study {settings.study_name} completed ({_failures(study)}); "
                            "see each trial's MLflow run or lower the search ranges")
    return summary


def _settle_models(
    runs: SweepRuns, settings: SweepSettings, study: optuna.Study, summary: SweepSummary
) -> SweepSummary:
    """With trial_artifacts=best only the best trial (of several objectives, the front) keeps its model; register the
    best trial's if asked (of several objectives, the front's best by the first)."""
    best = best_trial(study)
    assert best is not None  # summary.best_number is set
    if settings.trial_artifacts == "best":
        keep = {trial.number for trial in summary.front} | {best.number}
        runs.keep_only_best_models(study.get_trials(deepcopy=False), keep)
    name = settings.register_best_as
    version = runs.register_best_model(study, best, name) if name else None
    return dataclasses.replace(summary, registered_version=f"{name} version {version}") if version else summary


def _description(sweep: SweepContext) -> dict[str, str]:
    settings = sweep.sweep_settings
    return {
        "sweep.n_trials": str(settings.n_trials), "sweep.sampler": settings.sampler, "sweep.pruner": settings.pruner,
        "sweep.objective": ", ".join(f"{goal.direction} {goal.reduce} {goal.metric}" for goal in settings.goals),
        "sweep.constraints": ", ".join(f"{c.metric} <= {c.max:g}" for c in settings.constraints),
        "sweep.stop": f"patience={settings.stop.patience} min_delta={settings.stop.min_delta} "
                      f"target={settings.stop.target}",
        "sweep.storage": redact(sweep.location),
        "sweep.command": redact(" ".join(["python -m sweeps.run", *sweep.overrides])),
    }


def _failures(study) -> str:
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]  # not a queued baseline or retry
    reasons = [t.user_attrs.get(REASON_ATTR, "") for t in trials if t.state == TrialState.FAIL]
    first = next((reason for reason in reasons if reason), "no reason recorded")
    return f"{len(reasons)} of {len(trials)} failed; first: {first}"
