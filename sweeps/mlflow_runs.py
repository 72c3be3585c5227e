"""The study's MLflow side: one parent run per study, and the child run of each trial.

The trial<->run mapping lives in both stores: the child run carries `optuna.study` / `optuna.trial` tags
(set when run_pipeline creates it), and the trial gets the run id as its `mlflow_run_id` user attribute
as soon as the pipeline records the run (`RunOptions.on_run_start`). A trial's run is closed once, by the pipeline
that trains it; only a worker killed mid-trial leaves a RUNNING run, which whoever fails the stale trial finds by
either and closes as KILLED.
"""

from __future__ import annotations

from collections.abc import Mapping

import optuna
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from pipeline.config import MlflowTracking
from pipeline.tracking.runs import KILLED, RUNNING, STUDY_TAG, close_run, create_run, experiment_id, reopen_run
from pipeline.tracking.store import check_store, tracking_uri
from sweeps.heartbeat import RETRY_OF
from sweeps.trial_config import Scalar, format_value

RUN_ID_ATTR = "mlflow_run_id"
MODEL_ID_ATTR = "mlflow_model_id"
REGISTERED_ATTR = "mlflow_registered_model"  # on the study: the last registration's name, model id and version
PARENT_RUN_ATTR = "mlflow_parent_run_id"
TRIAL_TAG = "optuna.trial"
STATE_TAG = "optuna.state"
FEASIBLE_TAG = "optuna.feasible"  # with sweep.constraints: true or false
FRONT_TAG = "optuna.pareto_front"  # of a multi-objective study's completed trials: true or false
FOLD_TAG = "optuna.fold"  # a cross-validated trial's fold runs: the fold's index
RETRY_OF_TAG = "optuna.retry_of"  # a retry's run: the trial (of a dead worker) whose parameters it runs again


class SweepRuns:
    def __init__(self, tracking: MlflowTracking, study_name: str):
        self.tracking, self.uri = tracking, tracking_uri(tracking)
        check_store(self.uri)  # an unreachable or locked server fails before the first trial
        self.client = MlflowClient(self.uri)
        self.study_name = study_name
        self.experiment_id = experiment_id(self.client, tracking, self.uri)  # as a single run makes it

    def parent_run(self, study: optuna.Study, description: Mapping[str, str]) -> str:
        """The study's parent run: created on first use, reopened (RUNNING) when the study resumes.

        Call under the study's claim lock, so workers starting together create only one.
        """
        run_id = study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id is None:
            run_id = create_run(self.client, self.tracking, self.uri, name=f"sweep-{self.study_name}",
                                tags={STUDY_TAG: self.study_name, **description})
            study.set_user_attr(PARENT_RUN_ATTR, run_id)
            return run_id
        reopen_run(self.client, run_id)
        return run_id

    def trial_tags(self, trial: optuna.Trial, values: Mapping[str, Scalar]) -> dict[str, str]:
        params = {f"optuna.param.{key}": format_value(value) for key, value in values.items()}
        retry = {RETRY_OF_TAG: str(trial.user_attrs[RETRY_OF])} if RETRY_OF in trial.user_attrs else {}
        return {STUDY_TAG: self.study_name, TRIAL_TAG: str(trial.number), **params, **retry}

    def start_trial_run(self, trial: optuna.Trial, values: Mapping[str, Scalar], parent_run_id: str | None) -> str:
        """A cross-validated trial's own run, under the study's, grouping its folds' runs; it beats as they train."""
        return create_run(self.client, self.tracking, self.uri, name=f"trial-{trial.number}",
                          tags=self.trial_tags(trial, values), parent_run_id=parent_run_id)

    def find_trial_run(self, trial: FrozenTrial) -> str | None:
        if RUN_ID_ATTR in trial.user_attrs:
            return str(trial.user_attrs[RUN_ID_ATTR])
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{STUDY_TAG}` = '{self.study_name}' and tags.`{TRIAL_TAG}` = '{trial.number}'",
            max_results=1,
        )
        return runs[0].info.run_id if runs else None

    def tag_state(self, run_id: str, state: TrialState, feasible: bool | None = None) -> None:
        """Tag the child run with the trial's state (and whether it met sweep.constraints); the run itself was closed
        by the pipeline that trained it."""
        self.client.set_tag(run_id, STATE_TAG, state.name)
        if feasible is not None:
            self.client.set_tag(run_id, FEASIBLE_TAG, str(feasible).lower())

    def tag_front(self, trials: list[FrozenTrial], front: set[int]) -> None:
        """Tag every completed trial's run with whether it is on the Pareto front (a resumed study's may move)."""
        for trial in trials:
            run_id = trial.user_attrs.get(RUN_ID_ATTR)
            if trial.state == TrialState.COMPLETE and run_id:
                self.client.set_tag(run_id, FRONT_TAG, str(trial.number in front).lower())

    def close_stale_trial(self, trial: FrozenTrial) -> None:
        """A dead worker's trial: its run is closed KILLED here, as no pipeline is left to close it."""
        run_id = self.find_trial_run(trial)
        if run_id is None:
            return
        self.tag_state(run_id, TrialState.FAIL)
        if self.client.get_run(run_id).info.status == RUNNING:  # the worker may have died after its run closed
            self.client.set_tag(run_id, "stopped", "worker died (no heartbeat)")
            close_run(self.client, run_id, KILLED)

    def end_parent(self, run_id: str, status: str) -> None:
        close_run(self.client, run_id, status)

    def keep_only_best_models(self, trials: list[FrozenTrial], best: set[int]) -> None:
        """Delete the models of trials that were the best (or on the front) when they finished but have been beaten
        since."""
        for trial in trials:
            model_id = trial.user_attrs.get(MODEL_ID_ATTR)
            if model_id and trial.number not in best:
                try:
                    self.client.delete_logged_model(model_id)
                except MlflowException as error:  # `mlflow gc` already removed it after an earlier end of the study
                    if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                        raise

    def register_best_model(self, study: optuna.Study, best: FrozenTrial, name: str) -> str | None:
        """Make the best trial's model the next version of registered model `name` (once per model: a resumed
        study with the same best keeps its version); returns the version, or None if the best trial has no model."""
        model_id = best.user_attrs.get(MODEL_ID_ATTR)
        registered = study.user_attrs.get(REGISTERED_ATTR) or {}
        if model_id is None:
            return None
        if (registered.get("name"), registered.get("model_id")) == (name, model_id):
            return registered["version"]
        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        # The model's own artifact location, not models:/<id>: MLflow resolves that through the process-wide URI.
        version = self.client.create_model_version(
            name, source=self.client.get_logged_model(model_id).artifact_location,
            run_id=best.user_attrs.get(RUN_ID_ATTR), model_id=model_id,
            tags={STUDY_TAG: self.study_name, TRIAL_TAG: str(best.number)},
        )
        study.set_user_attr(REGISTERED_ATTR, {"name": name, "model_id": model_id, "version": str(version.version)})
        return str(version.version)
