"""Worker processes: each claims trials from the shared study and runs them in-process until none are left."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from typing import Sequence

import optuna
from optuna.trial import TrialState

from pipeline import stop
from pipeline.cli import process_entry, reported_errors
from pipeline.errors import PipelineError
from pipeline.worker_slots import WorkerSlot
from sweeps.context import SweepContext
from sweeps.heartbeat import Heartbeat
from sweeps.mlflow_runs import PARENT_RUN_ATTR
from sweeps.pareto import INFEASIBLE_ATTR
from sweeps.study import claim_trial, counted_trials, make_pruner, make_sampler, open_study, worker_seed
from sweeps.trial_config import TrialConfigs

REASON_ATTR = "reason"


def work(sweep: SweepContext, slot: WorkerSlot) -> None:
    """Claim and run trials until the study holds sweep.n_trials of them. A stop request waits for a safe point
    (pipeline.stop): before the next trial, or one inside the trial's run; never one inside TensorFlow's import or
    the study's storage (whose lock file every worker shares)."""
    with stop.deferred():
        from pipeline.memory import release_memory
        from sweeps.objective import TrialOutcome, TrialRunner  # imports TensorFlow: once per worker

        settings = sweep.sweep_settings
        device = sweep.pipeline_settings.device
        configs = TrialConfigs(
            sweep.pipeline_overrides, slot.overrides(device.intra_op_threads, device.inter_op_threads)
        )
        epochs = sweep.pipeline_settings.trainer.total_epochs
        study = open_study(settings, sweep.storage, pruner=make_pruner(settings, epochs))
        study.sampler = make_sampler(settings, worker_seed(settings, sweep.location, slot.index, counted_trials(study)))
        runner = TrialRunner(
            settings.params, configs, settings.goals, settings.constraints, sweep.trials_dir,
            settings.trial_artifacts, sweep.runs, study.user_attrs.get(PARENT_RUN_ATTR),
        )
        claim = (settings.n_trials, sweep.lock, sweep.deadline, sweep.fail_stale_trials, sweep.stop_reason)
        while True:
            stop.raise_if_requested()  # before claiming: a stopped worker leaves no trial behind
            trial = claim_trial(study, *claim)
            if trial is None:
                return
            try:
                with Heartbeat(trial, settings.heartbeat_interval):
                    outcome = runner(trial)
            except KeyboardInterrupt:  # the pipeline it interrupted closed the trial's run KILLED
                _finish(sweep, study, trial, TrialOutcome(TrialState.FAIL, reason="interrupted (Ctrl-C)"))
                raise
            _finish(sweep, study, trial, outcome)
            release_memory()  # the next trial starts from a clean slate; peak memory stays flat over a long sweep


def _finish(sweep, study, trial, outcome) -> None:
    if outcome.reason:
        trial.set_user_attr(REASON_ATTR, outcome.reason)
    study.tell(trial, list(outcome.values) if outcome.state == TrialState.COMPLETE and outcome.values else None,
               state=outcome.state)
    run_id = outcome.run_id
    if not run_id and sweep.runs:
        run_id = sweep.runs.find_trial_run(study.get_trials(deepcopy=False)[trial.number])
    if sweep.runs and run_id:
        sweep.runs.tag_state(run_id, outcome.state, feasible=outcome.feasible if sweep.sweep_settings.constraints
                             else None)
    shown = " ".join(f"{value:.4g}" for value in outcome.values) if outcome.values else outcome.reason
    infeasible = f" (infeasible: {trial.user_attrs[INFEASIBLE_ATTR]})" if not outcome.feasible else ""
    print(f"[sweep] trial {trial.number} {outcome.state.name}: {shown}{infeasible}", flush=True)


def worker_command(sweep: SweepContext, slot: WorkerSlot) -> list[str]:
    """The command line of one spawned worker (`python -m sweeps.workers` with what it needs, as JSON)."""
    spec = {"overrides": sweep.overrides, "slot": dataclasses.asdict(slot), "deadline": sweep.deadline}
    return [sys.executable, "-m", "sweeps.workers", json.dumps(spec)]


def main() -> None:
    """A spawned worker process: work until the study is done or the launcher's deadline passes."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with reported_errors(stop_signals=(signal.SIGTERM,)):  # one-line errors and exit codes, as from the command line
        spec = json.loads(sys.argv[1])
        work(SweepContext.load(spec["overrides"], spec["deadline"]), WorkerSlot(**spec["slot"]))


def run_workers(sweep: SweepContext, slots: list[WorkerSlot]) -> None:
    """Run the slots' workers: in this process for one, else as processes of their own (fresh TensorFlow each).

    A spawned worker has a session (so a process group) of its own, so a terminal's Ctrl-C (sent to its foreground
    group) reaches only this launcher, from the worker's first instant on; the launcher passes each Ctrl-C or SIGTERM on
    to the workers as a SIGTERM: one Ctrl-C is one stop request there, a second one stops them at once
    (pipeline.stop)."""
    if len(slots) == 1:
        work(sweep, slots[0])
        return
    processes: list[subprocess.Popen] = []
    interrupted = False
    try:
        with stop.deferred():  # a Ctrl-C while they start waits until every started worker is known
            for slot in slots:
                gpu = {"CUDA_VISIBLE_DEVICES": slot.gpu} if slot.gpu is not None else {}  # before TensorFlow loads
                processes.append(subprocess.Popen(worker_command(sweep, slot), env={**os.environ, **gpu},
                                                  start_new_session=True))
    except KeyboardInterrupt:
        interrupted = True
        _pass_stop_on(processes)
    if _waited_passing_stops_on(processes) or interrupted:
        raise KeyboardInterrupt
    failed = [p.returncode for p in processes if p.returncode != 0]
    if failed:
        raise PipelineError(f"{len(failed)} of {len(processes)} worker processes failed (exit codes {failed})")


def _waited_passing_stops_on(processes: Sequence[subprocess.Popen]) -> bool:
    """Wait for every worker; each Ctrl-C or SIGTERM this launcher gets meanwhile goes on to the live workers as a
    SIGTERM. Whether one came."""
    interrupted = False
    waiting = list(processes)
    while waiting:
        try:
            with stop.interruptible():
                waiting[0].wait()
            waiting.pop(0)
        except KeyboardInterrupt:
            interrupted = True
            _pass_stop_on(waiting)
    return interrupted


def _pass_stop_on(processes: Sequence[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)


if __name__ == "__main__":
    process_entry(main)()
