"""Several machines joining one study: 3 worker processes on a real PostgreSQL and a real MLflow server."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeps.settings import load
from sweeps.study import make_storage, open_study
from tests.sweeps.conftest import TINY

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_three_workers_on_postgres_finish_exactly_n_trials_each_with_its_run(
        postgres_database, mlflow_server, tmp_path):
    overrides = [*TINY, f"sweep.storage={postgres_database}", "tracking=server", f"tracking.uri={mlflow_server}",
                 "sweep.n_trials=7", "sweep.pruner=none", "sweep.study_name=shared", f"sweep.trials_dir={tmp_path}/t"]
    workers = [subprocess.Popen([sys.executable, "-m", "sweeps.run", *overrides],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [worker.communicate(timeout=540)[0] for worker in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], [o[-1500:] for o in outputs]

    study = open_study(load(overrides)[1], make_storage(postgres_database))
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(7))  # exactly n_trials, no number twice
    assert all(t.state == TrialState.COMPLETE for t in study.trials)

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("kerastrack")
    runs = client.search_runs([experiment.experiment_id], "tags.`optuna.study` = 'shared'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == list(range(7))
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == {r.info.run_id for r in children}
