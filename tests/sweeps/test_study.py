import importlib.util
import logging
import multiprocessing
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from pipeline.errors import PipelineError
from sweeps.settings import load
from sweeps.study import (
    ClaimLock,
    claim_trial,
    counted_trials,
    make_pruner,
    make_sampler,
    make_storage,
    open_study,
    startup_trials,
    storage_location,
    worker_seed,
)


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


SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler, "gp": optuna.samplers.GPSampler}
PRUNERS = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
           "none": optuna.pruners.NopPruner}


# GPSampler fits with PyTorch, the `gp` extra, which the tests' install (`.[dev]`) leaves out.
WITHOUT_TORCH = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="sweep.sampler=gp needs PyTorch")


@pytest.mark.parametrize("sampler", [pytest.param(name, marks=WITHOUT_TORCH) if name == "gp" else name
                                     for name in SAMPLERS])
def test_a_sampler_warns_of_nothing_a_user_can_change(sampler, caplog):
    s = settings(f"sweep.sampler={sampler}", "sweep.startup_trials=2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FutureWarning, ExperimentalWarning, ...
        study = optuna.create_study(sampler=make_sampler(s, seed=1))
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + (t.suggest_categorical("o", ["a", "b"]) == "a"), 5)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize(("sampler", "pruner"), [("tpe", "median"), ("random", "hyperband"), ("cmaes", "none"),
                                                 ("gp", "median")])
def test_the_study_samples_and_prunes_as_configured(tmp_path, sampler, pruner):
    s = settings(f"sweep.sampler={sampler}", f"sweep.pruner={pruner}")
    study = open_study(s, make_storage(str(tmp_path / "s.log")), sampler=make_sampler(s, seed=1),
                       pruner=make_pruner(s, 5))
    assert isinstance(study.sampler, SAMPLERS[sampler]) and isinstance(study.pruner, PRUNERS[pruner])


def first_proposals(s, location: str, worker_index: int, trials_so_far: int) -> list[float]:
    """The first learning rates a worker's sampler proposes for a fresh study."""
    study = optuna.create_study(sampler=make_sampler(s, worker_seed(s, location, worker_index, trials_so_far)))
    return [study.ask().suggest_float("lr", 1e-4, 1e-1, log=True) for _ in range(3)]


def test_a_seeded_fresh_study_proposes_the_same_values_again_but_other_workers_and_resumes_do_not(tmp_path):
    s = settings("sweep.seed=7")
    journal = str(tmp_path / "s.log")
    first = first_proposals(s, journal, 0, 0)
    assert first_proposals(s, str(tmp_path / "other.log"), 0, 0) == first
    assert first_proposals(settings("sweep.seed=8"), journal, 0, 0) != first
    assert first_proposals(s, journal, 1, 0) != first  # the second worker
    assert first_proposals(s, journal, 0, 5) != first  # the study resumed after 5 trials
    assert first_proposals(s, "sqlite:///x.db", 0, 0) != first  # a shared database: each process its own


def proposals_when_rewarded(s, reward) -> list[float]:
    study = optuna.create_study(direction="maximize", sampler=make_sampler(s, seed=1))
    proposed = []
    for _ in range(startup_trials(s) + 1):
        trial = study.ask()
        proposed.append(trial.suggest_float("x", 0.0, 1.0))
        study.tell(trial, reward(proposed[-1]))
    return proposed


@pytest.mark.parametrize(("n_trials", "startup"), [(4, 3), (8, 3), (20, 3), (40, 5), (64, 8), (200, 10)])
def test_random_startup_is_an_eighth_of_the_budget_within_3_to_10(n_trials, startup):
    assert startup_trials(settings(f"sweep.n_trials={n_trials}")) == startup
    assert startup_trials(settings(f"sweep.n_trials={n_trials}", "sweep.startup_trials=7")) == 7
    # Startup trials ignore the results; the first trial after them follows them: opposite rewards part it.
    s = settings(f"sweep.n_trials={n_trials}")
    high, low = proposals_when_rewarded(s, lambda x: x), proposals_when_rewarded(s, lambda x: -x)
    assert high[:startup] == low[:startup] and high[startup] != low[startup]


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


def test_no_trial_is_claimed_once_the_study_stopped_itself(tmp_path):
    location = str(tmp_path / "s.log")
    study = open_study(settings(), make_storage(location))
    lock = ClaimLock(location, "kerastrack")
    assert claim_trial(study, 5, lock, None, lambda study: None, lambda study: None) is not None
    assert claim_trial(study, 5, lock, None, lambda study: None, lambda study: "target reached") is None
    assert counted_trials(study) == 1
