import re

import pytest

from pipeline.errors import PipelineError
from sweeps.context import SweepContext
from sweeps.objective_checks import check_objective
from sweeps.settings import is_sweep_override, load


def test_sweeps_config_composes_pipeline_and_sweep_defaults():
    pipeline, settings = load(["optimizer=sgd", "sweep.n_trials=7"])
    assert pipeline.optimizer.name == "sgd"
    assert (settings.n_trials, settings.sampler, settings.pruner) == (7, "tpe", "median")
    assert (settings.baseline, settings.startup_trials) == (True, "auto")
    assert (settings.timeout, settings.max_retries) == (None, 2)
    assert (settings.objective.metric, settings.objective.direction) == ("val_accuracy", "maximize")
    assert settings.seed == pipeline.seed


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sweep.sampler=grid", "sweep.sampler='grid': allowed: 'tpe', 'random', 'cmaes' or 'gp'"),
        ("sweep.n_trials=0", "sweep.n_trials=0: input should be greater than or equal to 1"),
        ("sweep.pruner=asha", "sweep.pruner='asha'"),
        ("sweep.heartbeat_interval=90", "sweep.heartbeat_interval=90.0: must be below sweep.grace_period=60.0"),
        ("sweep.timeout=2days", "sweep.timeout='2days': expected seconds or a number with s, m or h (600, 30m, 2h)"),
        ("sweep.timeout=0", "sweep.timeout=0: input should be greater than 0"),
        ("sweep.startup_trials=0", "sweep.startup_trials=0: expected auto or a whole number >= 1"),
        ("sweep.max_retries=-1", "sweep.max_retries=-1: input should be greater than or equal to 0"),
        ("sweep.stop.patience=0", "sweep.stop.patience=0: input should be greater than or equal to 1"),
        ("sweep.stop.min_delta=-0.1", "sweep.stop.min_delta=-0.1: input should be greater than or equal to 0"),
    ],
)
def test_bad_sweep_settings_fail_in_one_line(override: str, message: str):
    with pytest.raises(PipelineError) as raised:
        load([override])
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(("given", "seconds"), [("2h", 7200), ("30m", 1800), ("90s", 90), ("600", 600), ("null", None)])
def test_timeout_reads_hours_minutes_and_seconds(given: str, seconds: float | None):
    assert load([f"sweep.timeout={given}"])[1].timeout == seconds


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sweep.objective.metric=val_acc"], "sweep.objective.metric=val_acc: unknown metric"),
        (["sweep.objective.metric=test_accuracy"], "cannot prune; set sweep.pruner=none"),
    ],
)
def test_objective_metric_is_checked(overrides: list[str], message: str):
    with pytest.raises(PipelineError, match=message):
        check_objective(load(overrides)[1])
    check_objective(load(["sweep.objective.metric=test_f1_macro", "sweep.pruner=none"])[1])


def test_sweep_overrides_are_told_apart_from_pipeline_overrides():
    assert [o for o in ["sweep=default", "sweep.n_trials=3", "~sweep.params.momentum", "optimizer=sgd",
                        "trainer.epochs=2", "+sweep.params.x={}"] if not is_sweep_override(o)] == [
        "optimizer=sgd", "trainer.epochs=2"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tracking.register_as=digits"], "tracking.register_as=digits: in a sweep every trial would register"),
        (["sweep.register_best_as=digits", "tracking=none"], "sweep.register_best_as=digits: trials log no model"),
        (["sweep.register_best_as=digits", "sweep.trial_artifacts=none"], "sweep.trial_artifacts=none; allowed"),
        (["sweep.trial_artifacts=some"], "sweep.trial_artifacts='some': allowed: 'best', 'all' or 'none'"),
    ],
)
def test_model_registration_is_checked_before_any_trial(overrides: list[str], message: str):
    with pytest.raises(PipelineError, match=re.escape(message)):
        SweepContext.load(overrides)


def test_the_gp_sampler_without_pytorch_is_one_line(monkeypatch):
    import importlib.util

    from sweeps.objective_checks import check_sampler

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "torch" else find_spec(name))
    with pytest.raises(PipelineError, match=re.escape("sweep.sampler=gp: Optuna's GPSampler needs PyTorch")):
        check_sampler(load(["sweep.sampler=gp"])[1])
    check_sampler(load(["sweep.sampler=tpe"])[1])
