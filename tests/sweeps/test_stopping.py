"""sweep.stop: the rule judged from a study's trials, in the order they finished."""

from datetime import datetime, timedelta

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeps.settings import Objective, StopRule
from sweeps.stopping import stop_reason

START = datetime(2026, 1, 1)


def finished(values, states=None, constraints=None):
    """Trials finishing one second apart, with these values (None: pruned)."""
    trials = []
    for number, value in enumerate(values):
        state = TrialState.PRUNED if value is None else TrialState.COMPLETE
        made = create_trial(state=state, value=value, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                            system_attrs={"constraints:params": c} if (c := (constraints or {}).get(number)) else {})
        made.number = number
        made.datetime_complete = START + timedelta(seconds=number)
        trials.append(made)
    return trials


MAXIMIZE = Objective(metric="val_accuracy", direction="maximize")


@pytest.mark.parametrize(("values", "patience", "min_delta", "stops"), [
    ([0.5, 0.6, 0.55, 0.58, 0.59], 3, 0.0, True),  # 3 trials after the best, none better
    ([0.5, 0.6, 0.55, 0.58, 0.61], 3, 0.0, False),  # the last one improved
    ([0.5, 0.6, 0.55, 0.58, 0.61], 3, 0.02, True),  # ... but by less than min_delta
    ([0.5, 0.6, None, None, None], 3, 0.0, True),  # pruned trials are not improvements
    ([0.5, 0.6, 0.55, 0.58], 3, 0.0, False),  # only 2 since the best
])
def test_patience_counts_finished_trials_since_the_last_real_improvement(values, patience, min_delta, stops):
    reason = stop_reason(finished(values), StopRule(patience=patience, min_delta=min_delta), MAXIMIZE)
    assert (reason is not None) == stops
    if stops:
        assert reason.startswith("no improvement of val_accuracy by at least sweep.stop.min_delta=")
        assert "best: trial 1, 0.6000" in reason


def test_trials_count_in_the_order_they_finished_not_by_number():
    trials = finished([0.5, 0.6, 0.55, 0.58, 0.59])
    trials[1].datetime_complete = START + timedelta(seconds=10)  # the best finished last
    assert stop_reason(trials, StopRule(patience=3), MAXIMIZE) is None


def test_an_infeasible_trial_neither_improves_nor_reaches_the_target():
    trials = finished([0.5, 0.9, 0.45], constraints={1: 5000.0})
    assert stop_reason(trials, StopRule(target=0.8), MAXIMIZE) is None
    assert "best: trial 0" in stop_reason(trials, StopRule(patience=2), MAXIMIZE)


@pytest.mark.parametrize(("direction", "values", "target", "reason"), [
    ("maximize", [0.5, 0.96], 0.95, "target reached: trial 1's val_accuracy 0.9600 >= sweep.stop.target=0.95"),
    ("maximize", [0.5, 0.94], 0.95, None),
    ("minimize", [0.5, 0.09], 0.1, "target reached: trial 1's val_loss 0.0900 <= sweep.stop.target=0.1"),
])
def test_target_stops_once_a_trial_reaches_it(direction, values, target, reason):
    metric = "val_accuracy" if direction == "maximize" else "val_loss"
    objective = Objective(metric=metric, direction=direction)
    assert stop_reason(finished(values), StopRule(target=target), objective) == reason


def test_without_a_rule_nothing_stops():
    assert stop_reason(finished([0.5, 0.4, 0.3, 0.2]), StopRule(), MAXIMIZE) is None
