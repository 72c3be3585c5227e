import time

from optuna.trial import TrialState

from sweeps.heartbeat import HEARTBEAT, Heartbeat, fail_stale_trials
from sweeps.settings import load
from sweeps.study import make_storage, open_study


def test_heartbeat_keeps_a_trial_alive_and_a_silent_one_is_failed(tmp_path):
    study = open_study(load(["sweep.study_name=hb"])[1], make_storage(str(tmp_path / "hb.log")))
    alive, dead = study.ask(), study.ask()
    dead.set_user_attr(HEARTBEAT, time.time() - 10)  # its worker was killed 10 s ago
    failed_runs = []
    with Heartbeat(alive, interval=0.2):
        time.sleep(0.5)
        failed = fail_stale_trials(study, grace_period=2, on_failed=failed_runs.append)
        stamped = study.trials[alive.number].user_attrs[HEARTBEAT]
    assert [t.number for t in failed] == [dead.number] == [t.number for t in failed_runs]
    assert time.time() - stamped < 1
    assert [t.state for t in study.trials] == [TrialState.RUNNING, TrialState.FAIL]
    assert fail_stale_trials(study, grace_period=2, on_failed=failed_runs.append) == []
