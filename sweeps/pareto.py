"""The best of a study: the best trial of one objective, or the Pareto front of several and the trial picked from it.

Feasibility (sweep.constraints) is Optuna's: `study.best_trial` and `study.best_trials` leave out trials whose
constraints (`trial.set_constraint`) are above zero, so an infeasible trial is never the best or on the front.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial

from sweeps.settings import Objective

INFEASIBLE_ATTR = "infeasible"  # on a trial that broke sweep.constraints: which, e.g. "params=120000 > 100000"


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible trials no other feasible trial beats on every objective, best first by the first objective."""
    trials = study.best_trials
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(trials, key=lambda trial: (sign * trial.values[0], trial.number))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The trial a sweep reports, keeps and registers: the best one; of several objectives, the front's best by the
    first (the order of sweep.objectives says what matters most). None before a feasible trial completed."""
    if len(study.directions) > 1:
        on_front = front(study)
        return on_front[0] if on_front else None
    try:
        return study.best_trial
    except ValueError:  # none completed, or none feasible
        return None


def dominates(a: Sequence[float], b: Sequence[float], goals: Sequence[Objective]) -> bool:
    """Whether values `a` are at least as good as `b` on every objective and better on one."""
    signs = [1 if goal.direction == "maximize" else -1 for goal in goals]
    at_least = all(s * x >= s * y for s, x, y in zip(signs, a, b))
    return at_least and any(s * x > s * y for s, x, y in zip(signs, a, b))
