"""A study that stops itself: `sweep.stop.patience` (no improvement lately) and `sweep.stop.target` (good enough).

Judged from the study's trials alone, under the claim lock, so every worker (on every machine) agrees, and a study
resumed with the same rule is still stopped. Optuna's `Terminator` would do the first, but it is deprecated.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps.settings import Objective, StopRule

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # a failed trial says nothing about the search


def is_feasible(trial: FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())


def stop_reason(trials: Sequence[FrozenTrial], rule: StopRule, objective: Objective) -> str | None:
    """Why the study should claim no more trials, or None. Trials count in the order they finished; a pruned or
    infeasible trial is one without an improvement."""
    if rule.patience is None and rule.target is None:
        return None
    sign = 1.0 if objective.direction == "maximize" else -1.0
    finished = sorted((t for t in trials if t.state in FINISHED),
                      key=lambda t: (t.datetime_complete or datetime.max, t.number))
    best: tuple[int, float] | None = None  # the trial that last improved the best, and its value
    since_best = 0
    for trial in finished:
        value = trial.value if trial.state == TrialState.COMPLETE and is_feasible(trial) else None
        gain = sign * (value - best[1]) if value is not None and best is not None else None
        if value is not None and (best is None or (gain is not None and gain > 0 and gain >= rule.min_delta)):
            best, since_best = (trial.number, value), 0
        else:
            since_best += 1
    if best is None:
        return None
    number, value = best
    metric = objective.metric
    if rule.target is not None and sign * (value - rule.target) >= 0:
        relation = ">=" if sign > 0 else "<="
        return f"target reached: trial {number}'s {metric} {value:.4f} {relation} sweep.stop.target={rule.target}"
    if rule.patience is not None and since_best >= rule.patience:
        return (f"no improvement of {metric} by at least sweep.stop.min_delta={rule.min_delta} in the last "
                f"{since_best} finished trials (sweep.stop.patience={rule.patience}; best: trial {number}, "
                f"{value:.4f})")
    return None


def study_stop_reason(study: optuna.Study, rule: StopRule, objective: Objective) -> str | None:
    return stop_reason(study.get_trials(deepcopy=False), rule, objective)
