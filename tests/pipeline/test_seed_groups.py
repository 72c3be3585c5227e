"""Statistics over seeds: groups by the other swept overrides, sample statistics, names MLflow accepts."""

import math
import statistics

import pytest

from pipeline import seed_groups

JOBS = [("optimizer=sgd seed=1", {"test_accuracy": 0.70, "best_val_accuracy": 0.75}),
        ("optimizer=adam seed=1", {"test_accuracy": 0.90, "best_val_accuracy": 0.95}),
        ("optimizer=sgd seed=2", {"test_accuracy": 0.80, "best_val_accuracy": 0.85}),
        ("optimizer=adam seed=2", {"test_accuracy": 0.94, "best_val_accuracy": math.nan}),
        ("optimizer=sgd seed=3", {"test_accuracy": 0.66, "best_val_accuracy": 0.70})]


def test_jobs_are_grouped_by_their_other_overrides_with_sample_statistics():
    groups = seed_groups.summarise(JOBS, ["test_accuracy", "best_val_accuracy", "test_loss"])
    assert [(group.overrides, group.seeds) for group in groups] == [("optimizer=sgd", ("1", "2", "3")),
                                                                    ("optimizer=adam", ("1", "2"))]
    sgd, adam = groups
    assert sgd.statistics["test_accuracy"] == pytest.approx(
        {"mean": statistics.mean([0.70, 0.80, 0.66]), "std": statistics.stdev([0.70, 0.80, 0.66]), "min": 0.66,
         "max": 0.80})
    assert "test_loss" not in sgd.statistics  # no job has it
    assert adam.statistics["best_val_accuracy"] == {"mean": 0.95, "min": 0.95, "max": 0.95}  # NaN left out; one: no std


def test_no_groups_unless_the_seed_is_swept():
    assert seed_groups.summarise([("optimizer=sgd", {"test_accuracy": 0.7})], ["test_accuracy"]) == []


def test_the_seed_alone_is_one_group_named_by_the_metric_only():
    groups = seed_groups.summarise([("seed=1", {"test_loss": 1.0}), ("seed=2", {"test_loss": 3.0})], ["test_loss"])
    assert seed_groups.parent_metrics(groups) == pytest.approx(
        {"test_loss_mean": 2.0, "test_loss_std": math.sqrt(2), "test_loss_min": 1.0, "test_loss_max": 3.0})


def test_every_metric_name_is_one_mlflow_accepts(mlflow_store):
    jobs = [(f"optimizer=adam model.layers=[Flatten,Dense] data.path=../a=b.npz seed={seed}",
             {"test_accuracy": 0.5 + seed / 10}) for seed in (1, 2)]
    names = seed_groups.parent_metrics(seed_groups.summarise(jobs, ["test_accuracy"]))
    assert "optimizer:adam model.layers:_Flatten_Dense_ data.path:.._a_b.npz/test_accuracy_mean" in names
    client = mlflow_store.client()
    run = client.create_run(client.create_experiment("names")).info.run_id
    for name, value in names.items():
        client.log_metric(run, name, value)  # raises for a name MLflow does not allow
    assert client.get_run(run).data.metrics == pytest.approx(names)


def test_the_csv_and_the_table_hold_each_group_and_metric():
    groups = seed_groups.summarise(JOBS[:3], ["test_accuracy"])
    assert seed_groups.csv_text(groups).splitlines() == [
        "group,metric,seeds,mean,std,min,max",
        "optimizer=sgd,test_accuracy,2,0.75,0.0707107,0.7,0.8",
        "optimizer=adam,test_accuracy,1,0.9,,0.9,0.9"]
    table = seed_groups.table(groups)
    assert [line.split() for line in table[1:]] == [
        ["group", "metric", "seeds", "mean", "std", "min", "max"],
        ["optimizer=sgd", "test_accuracy", "2", "0.7500", "0.0707", "0.7000", "0.8000"],
        ["optimizer=adam", "test_accuracy", "1", "0.9000", "-", "0.9000", "0.9000"]]


def test_the_best_value_follows_the_checkpoint_mode():
    assert seed_groups.best_value([0.5, math.nan, 0.7, 0.6], "max") == 0.7
    assert seed_groups.best_value([0.5, 0.3, 0.4], "min") == 0.3
    assert math.isnan(seed_groups.best_value([], "max"))
