import multiprocessing
import time

import optuna
import pytest
from optuna.trial import TrialState

from pipeline.errors import PipelineError
from sweeps.settings import load
from sweeps.study import (ClaimLock, claim_trial, counted_trials, make_pruner, make_sampler, make_storage, open_study,
                          startup_trials, storage_location, worker_seed)


def settings(*overrides: str):
    return load(list(overrides))[1]


def test_default_storage_is_one_journal_file_per_study_under_mlruns():
    assert storage_location(settings("sweep.study_name=lr")).endswith("/mlruns/optuna/lr.log")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sweep.storage=mysql://db/x"], "expected null, a journal file path ending in .log"),
        (["sweep.storage=study.db"], "expected null, a journal file path ending in .log"),
        (["sweep.storage=sqlite:///x.db", "sweep.n_workers=2"], "SQLite is not safe for 2 concurrent workers"),
    ],
)
def test_bad_storage_fails_in_one_line(overrides, message):
    with pytest.raises(PipelineError, match=message):
        storage_location(settings(*overrides))


def test_same_study_name_resumes_and_a_changed_direction_is_refused(tmp_path):
    storage = make_storage(str(tmp_path / "s.log"))
    first = open_study(settings("sweep.study_name=a"), storage)
    first.tell(first.ask(), 0.5)
    again = open_study(settings("sweep.study_name=a"), make_storage(str(tmp_path / "s.log")))
    assert [t.value for t in again.trials] == [0.5]
    with pytest.raises(PipelineError, match="already exists with direction maximize"):
        open_study(settings("sweep.study_name=a", "sweep.objective.direction=minimize"), storage)


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes"])
def test_samplers_and_pruners_are_built_from_config(sampler):
    made = make_sampler(settings(f"sweep.sampler={sampler}"), seed=1)
    assert type(made).__name__.lower().startswith(sampler)
    assert isinstance(make_pruner(settings("sweep.pruner=hyperband"), 5), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner(settings("sweep.pruner=none"), 5), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(settings(), 5), optuna.pruners.MedianPruner)


def test_seeded_sampler_repeats_a_fresh_study_but_not_a_resumed_one(tmp_path):
    s = settings("sweep.seed=7")
    location = str(tmp_path / "s.log")
    assert worker_seed(s, location, 0, 0) == 7
    assert len({worker_seed(s, location, 0, 5), worker_seed(s, location, 1, 0), 7}) == 3


@pytest.mark.parametrize(("n_trials", "startup"), [(4, 3), (8, 3), (20, 3), (40, 5), (64, 8), (200, 10)])
def test_random_startup_is_an_eighth_of_the_budget_within_3_to_10(n_trials, startup):
    assert startup_trials(settings(f"sweep.n_trials={n_trials}")) == startup
    assert startup_trials(settings(f"sweep.n_trials={n_trials}", "sweep.startup_trials=7")) == 7
    sampler = make_sampler(settings(f"sweep.n_trials={n_trials}"), seed=1)
    assert sampler._n_startup_trials == startup and sampler._multivariate and sampler._group  # noqa: SLF001


def test_no_trial_is_claimed_after_the_deadline(tmp_path):
    location = str(tmp_path / "s.log")
    study = open_study(settings(), make_storage(location))
    lock = ClaimLock(location, "kerastrack")
    assert claim_trial(study, 5, lock, time.time() + 60, lambda study: None) is not None
    assert claim_trial(study, 5, lock, time.time() - 1, lambda study: None) is None
    assert counted_trials(study) == 1


def _claim_until_full(location: str, n_trials: int) -> None:
    s = settings("sweep.study_name=race")
    study = open_study(s, make_storage(location))
    lock = ClaimLock(location, s.study_name)
    while (trial := claim_trial(study, n_trials, lock, None, lambda study: None)) is not None:
        study.tell(trial, 1.0)


def test_workers_racing_for_trials_create_exactly_n_trials(tmp_path):
    location = str(tmp_path / "race.log")
    open_study(settings("sweep.study_name=race"), make_storage(location))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_claim_until_full, args=(location, 25)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    study = open_study(settings("sweep.study_name=race"), make_storage(location))
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert counted_trials(study) == 25
    assert sorted(t.number for t in study.trials) == list(range(25))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
