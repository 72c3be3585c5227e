"""Worker processes: each claims trials from the shared study and runs them in-process until none are left."""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Sequence

import optuna
from optuna.trial import TrialState

from pipeline.cli import reported_errors
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
    """Claim and run trials until the study holds sweep.n_trials of them."""
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
        settings.params, configs, settings.goals, settings.constraints, sweep.trials_dir, settings.trial_artifacts,
        sweep.runs, study.user_attrs.get(PARENT_RUN_ATTR),
    )
    claim = (settings.n_trials, sweep.lock, sweep.deadline, sweep.fail_stale_trials, sweep.stop_reason)
    while (trial := claim_trial(study, *claim)) is not None:
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


def _worker_main(overrides: list[str], slot: WorkerSlot, deadline: float | None) -> None:
    """A spawned worker process: pin its GPU before TensorFlow loads, then work (until the launcher's deadline).
    A terminal's Ctrl-C reaches every process of the sweep; the workers leave it to the launcher, which passes each
    one on as a SIGTERM: so one Ctrl-C is one stop request here, and a second one stops at once (pipeline.stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if slot.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with reported_errors(stop_signals=(signal.SIGTERM,)):  # one-line errors and exit codes, as from the command line
        work(SweepContext.load(overrides, deadline), slot)


def run_workers(sweep: SweepContext, slots: list[WorkerSlot]) -> None:
    """Run the slots' workers: in this process for one, else as spawned processes (fresh TensorFlow each)."""
    if len(slots) == 1:
        work(sweep, slots[0])
        return
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_main, args=(sweep.overrides, slot, sweep.deadline)) for slot in slots]
    for process in processes:
        process.start()
    if _joined_passing_stops_on(processes):
        raise KeyboardInterrupt
    failed = [p.exitcode for p in processes if p.exitcode not in (0, None)]
    if failed:
        raise PipelineError(f"{len(failed)} of {len(processes)} worker processes failed (exit codes {failed})")


def _joined_passing_stops_on(processes: Sequence[multiprocessing.process.BaseProcess]) -> bool:
    """Wait for every worker; each Ctrl-C or SIGTERM this launcher gets meanwhile goes on to the live workers as a
    SIGTERM. Whether one came."""
    interrupted = False
    waiting = list(processes)
    while waiting:
        try:
            waiting[0].join()
            waiting.pop(0)
        except KeyboardInterrupt:
            interrupted = True
            for process in waiting:
                if process.is_alive() and process.pid:
                    os.kill(process.pid, signal.SIGTERM)
    return interrupted
