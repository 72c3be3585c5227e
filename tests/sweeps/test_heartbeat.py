import time

from optuna.trial import TrialState

from sweeps.heartbeat import HEARTBEAT, RETRIES, RETRY_OF, Heartbeat, fail_stale_trials
from sweeps.settings import load
from sweeps.study import counted_trials, make_storage, open_study


def test_heartbeat_keeps_a_trial_alive_and_a_silent_one_is_failed(tmp_path):
    study = open_study(load(["sweep.study_name=hb"])[1], make_storage(str(tmp_path / "hb.log")))
    alive, dead = study.ask(), study.ask()
    dead.set_user_attr(HEARTBEAT, time.time() - 10)  # its worker was killed 10 s ago
    failed_runs = []
    with Heartbeat(alive, interval=0.2):
        time.sleep(0.5)
        failed = fail_stale_trials(study, grace_period=2, max_retries=0, on_failed=failed_runs.append)
        stamped = study.trials[alive.number].user_attrs[HEARTBEAT]
    assert [t.number for t in failed] == [dead.number] == [t.number for t in failed_runs]
    assert time.time() - stamped < 1
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.FAIL]
    assert fail_stale_trials(study, grace_period=2, max_retries=0, on_failed=failed_runs.append) == []


def test_a_dead_workers_trial_is_queued_again_up_to_max_retries_and_stops_counting(tmp_path):
    study = open_study(load(["sweep.study_name=retry"])[1], make_storage(str(tmp_path / "retry.log")))
    study.enqueue_trial({"x": 0.25})
    for expected_retries in (1, 2):
        dead = study.ask()
        dead.suggest_float("x", 0, 1)
        dead.set_user_attr(HEARTBEAT, time.time() - 10)
        fail_stale_trials(study, grace_period=2, max_retries=2, on_failed=lambda trial: None)
        retry = study.trials[-1]
        assert retry.state == TrialState.WAITING and retry.params == {}
        assert retry.system_attrs["fixed_params"] == {"x": 0.25}
        assert (retry.user_attrs[RETRY_OF], retry.user_attrs[RETRIES]) == (dead.number, expected_retries)
        assert counted_trials(study) == 0  # failed by a dead worker and queued again: not one of n_trials
    last = study.ask()
    assert last.params == {} and last.suggest_float("x", 0, 1) == 0.25
    last.set_user_attr(HEARTBEAT, time.time() - 10)
    fail_stale_trials(study, grace_period=2, max_retries=2, on_failed=lambda trial: None)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3  # retries used up: this failure counts
    assert counted_trials(study) == 1
