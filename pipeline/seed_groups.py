"""A multirun over seeds, summarised: its jobs grouped by their other swept overrides, and for each group the mean,
standard deviation, min and max of each metric over its seeds.

`-m seed=range(1,6)` alone is one group; `-m optimizer=sgd,adam seed=1,2,3` two (`optimizer=sgd`, `optimizer=adam`).
Pure Python: `pipeline.jobs` hands it the finished jobs' swept overrides and metrics, from MLflow or from Hydra.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

SEED = "seed"
STATISTICS = ("mean", "std", "min", "max")
# MLflow metric names allow letters, digits, _ - . space : and /; '=' is not allowed, so an override is named
# `key:value` in them, and any other character becomes '_'.
_NOT_IN_METRIC_NAMES = re.compile(r"[^\w.\- :]")


@dataclass(frozen=True)
class SeedGroup:
    overrides: str  # the group's swept overrides other than the seed, as typed; "" when only the seed is swept
    seeds: tuple[str, ...]  # of its finished jobs
    # metric -> mean, std (the sample standard deviation; absent for one seed), min, max
    statistics: dict[str, dict[str, float]]


def best_value(values: Sequence[float], mode: str) -> float:
    """The best of an epoch metric's values: the checkpoint's `mode` (max or min), NaN epochs aside."""
    finite = [value for value in values if not math.isnan(value)]
    return (max if mode == "max" else min)(finite) if finite else math.nan


def summarise(jobs: Sequence[tuple[str, Mapping[str, float]]], metrics: Sequence[str]) -> list[SeedGroup]:
    """The groups of `jobs` (each a finished job's swept overrides, "optimizer=sgd seed=2", and its metrics); none
    unless the seed is among the swept keys. Groups in the order of their first job."""
    groups: dict[str, list[tuple[str, Mapping[str, float]]]] = {}
    for swept, values in jobs:
        overrides = swept.split()
        seeds = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == SEED]
        if not seeds:
            return []
        label = " ".join(o for o in overrides if o.split("=", 1)[0] != SEED)
        groups.setdefault(label, []).append((seeds[0], values))
    return [SeedGroup(label, tuple(seed for seed, _ in members), _statistics(members, metrics))
            for label, members in groups.items()]


def _statistics(members: list[tuple[str, Mapping[str, float]]], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    summary = {}
    for metric in metrics:
        values = [job[metric] for _, job in members if metric in job and not math.isnan(job[metric])]
        if values:
            summary[metric] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
                               **({"std": statistics.stdev(values)} if len(values) > 1 else {})}
    return summary


def metric_name(group: SeedGroup, metric: str, statistic: str) -> str:
    """The parent run's metric: `optimizer:adam/test_accuracy_mean` (`test_accuracy_mean` for the seed alone)."""
    label = " ".join(_NOT_IN_METRIC_NAMES.sub("_", o.replace("=", ":", 1)) for o in group.overrides.split())
    return f"{label}/{metric}_{statistic}" if label else f"{metric}_{statistic}"


def parent_metrics(groups: Sequence[SeedGroup]) -> dict[str, float]:
    return {metric_name(group, metric, statistic): value for group in groups
            for metric, values in group.statistics.items() for statistic, value in values.items()}


def rows(groups: Sequence[SeedGroup]) -> list[list[str]]:
    """One row per group and metric: group, metric, seeds, mean, std, min, max ('' where a statistic is absent)."""
    return [[group.overrides, metric, str(len(group.seeds)),
             *(f"{values[statistic]:.6g}" if statistic in values else "" for statistic in STATISTICS)]
            for group in groups for metric, values in group.statistics.items()]


def csv_text(groups: Sequence[SeedGroup]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["group", "metric", "seeds", *STATISTICS])
    writer.writerows(rows(groups))
    return text.getvalue()


def table(groups: Sequence[SeedGroup]) -> list[str]:
    """The console's table: the groups' statistics, four decimals."""
    heading = ["group", "metric", "seeds", *STATISTICS]
    body = [[group.overrides or "-", metric, str(len(group.seeds)),
             *(f"{values[statistic]:.4f}" if statistic in values else "-" for statistic in STATISTICS)]
            for group in groups for metric, values in group.statistics.items()]
    widths = [max(len(row[column]) for row in [heading, *body]) for column in range(len(heading))]
    return [f"Over seeds ({', '.join(STATISTICS)}: std is the sample standard deviation):",
            *("  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                        for column, (cell, width) in enumerate(zip(row, widths))).rstrip()
              for row in [heading, *body])]
