"""The jobs of one command line: every job checked before the first one starts, a multirun's parent run, each run.

`check_jobs` is where a command line's jobs are checked without TensorFlow; `run_job` is the Hydra app's task
function, called once per job, in this process (TensorFlow imported once) or in a launcher's worker process;
`MultirunParentRun`, a Hydra callback (conf/config.yaml, hydra.callbacks), owns a multirun's MLflow parent run and
ends the multirun with a table of its jobs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

from hydra.conf import HydraConf
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pipeline import cluster, seed_groups, stop
from pipeline.backbones import check_backbone
from pipeline.compose import compose_config, hydra_on_conf, validate
from pipeline.config import CheckpointSettings, MlflowTracking, PretrainedModel, Settings, TrackingSettings
from pipeline.credentials import redact_files
from pipeline.errors import PipelineError
from pipeline.run_log import teed_to
from pipeline.tracking.store import check_store, tracking_uri
from pipeline.worker_slots import parallel_processes, plan_slots, visible_gpus

OUTPUT_DIR_ALIAS = "output_dir="  # the pipeline's older name for Hydra's output folder
TEST_METRICS = ("test_accuracy", "test_loss", "test_f1_macro")


def hydra_overrides(overrides: list[str], multirun: bool) -> list[str]:
    """`output_dir=<d>` as Hydra's own key: hydra.run.dir, or hydra.sweep.dir with -m (each job in a subdir)."""
    folder_key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    return [folder_key + o.removeprefix(OUTPUT_DIR_ALIAS) if o.startswith(OUTPUT_DIR_ALIAS) else o for o in overrides]


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Each job's overrides, the sweep syntax (a,b / range / glob / choice) expanded as Hydra's basic sweeper does:
    every combination, keys in the order first given (a key given twice keeps its place and its last value)."""
    if not multirun:
        return [overrides]
    with hydra_on_conf():  # glob() lists a group's options
        parsed = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader()).parse_overrides(overrides)
    values: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise PipelineError(f"{override.input_line}: Hydra's basic sweeper runs lists of values, not intervals; "
                                "list them (a,b), use range(...), or search with python -m sweeps.run")
    return [list(job) for job in itertools.product(*values.values())]


def check_jobs(overrides: list[str], multirun: bool) -> list[Settings]:
    """Every job checked, so a bad value in the last job fails before the first one trains: all configs first
    (fast), then what each job needs to start."""
    jobs = job_overrides(overrides, multirun)
    checked = []
    for number, job in enumerate(jobs):
        with _job_errors(number, len(jobs), multirun):
            checked.append(validate(compose_config(job)))
    for number, settings in enumerate(checked):
        with _job_errors(number, len(jobs), multirun):
            check_environment(settings)
    return checked


def check_environment(settings: Settings) -> None:
    """What a checked config needs before any TensorFlow work starts: its data, a pretrained backbone's image size
    and weights, its cluster, its tracking store and the run it resumes."""
    from pipeline.data import load_data  # NumPy and the readers: not before the configs are checked

    data = load_data(settings.data)  # bad data fails here too; run_pipeline reuses this read (load_data keeps it)
    if isinstance(settings.model, PretrainedModel):
        check_backbone(settings.model.backbone, settings.model.weights, data.input_shape)
    if settings.device.name == "multi_worker":
        cluster.from_environment()  # a malformed TF_CONFIG
    if isinstance(settings.tracking, MlflowTracking):
        with stop.deferred():  # they write to the store (a fresh one's tables, dead runs closed): never half of it
            check_store(tracking_uri(settings.tracking))  # an unwritable store, a server down or refusing the login
            if settings.resume:
                from pipeline.tracking.resume import check_resumable  # MLflow's client: only to find the run

                check_resumable(settings)  # no such run, a live one, another config, nothing for resume=last


@contextlib.contextmanager
def _job_errors(number: int, count: int, multirun: bool) -> Iterator[None]:
    try:
        yield
    except PipelineError as error:
        raise PipelineError(f"job #{number} of {count}: {error}" if multirun else str(error)) from None


@dataclass(frozen=True)
class JobOutcome:
    overrides: str  # the job's swept overrides
    status: str  # FINISHED, FAILED, KILLED (as MLflow writes a run's status)
    metrics: dict[str, float] = field(default_factory=dict)  # its test metrics and best_<checkpoint monitor>


def best_metric(checkpoint: CheckpointSettings) -> str:
    """The name of a job's best value of the metric its best checkpoint is chosen by: best_val_accuracy."""
    return f"best_{checkpoint.monitor}"


class MultirunParentRun(Callback):
    """A multirun's MLflow parent run: opened before its first job, named by each job as its parent, closed after
    the last one (FINISHED); a job failed or the multirun interrupted, `ended_with_the_jobs` closes it. A multirun
    that ran to its end (FINISHED or FAILED) ends with a table of its jobs and the parent run's link; when its jobs
    differ in `seed`, also with their statistics over the seeds (pipeline.seed_groups), recorded on the parent run."""

    # The multirun of the job running in this process: the callback Hydra made here, or, in a launcher's worker
    # process, the copy of it that Hydra sends there with each job.
    _current: ClassVar[MultirunParentRun | None] = None

    def __init__(self) -> None:
        self.tracking: TrackingSettings | None = None  # the first job's
        self.checkpoint = CheckpointSettings()  # the first job's: which epoch metric is a job's best
        self.run_id: str | None = None
        self.jobs = 1
        self.swept_keys: set[str] = set()
        self.job_labels: list[str] = []  # each job's swept overrides, in the order the jobs run
        self.sweep_dir = ""
        self.outcomes: list[JobOutcome] = []  # the jobs that ran in this process, as Hydra handed them back

    @classmethod
    def current(cls) -> MultirunParentRun | None:
        return cls._current

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pipeline import tracking  # MLflow, unless tracking=none: not before the jobs are checked

        overrides = list(config.hydra.overrides.task)
        jobs = job_overrides(overrides, multirun=True)
        first = validate(compose_config(jobs[0]))
        tags = {"overrides": " ".join(overrides), "jobs": str(len(jobs)), "mlflow.source.name": "pipeline.run -m"}
        self.tracking, self.checkpoint, self.jobs = first.tracking, first.trainer.checkpoint, len(jobs)
        self.swept_keys = _swept_keys(jobs)
        self.job_labels = [self._swept(job) for job in jobs]
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.run_id = tracking.open_parent_run(first.tracking, name=f"multirun-{time.strftime('%Y%m%d-%H%M%S')}",
                                               tags=tags)
        MultirunParentRun._current = self
        if self.run_id:
            assert isinstance(first.tracking, MlflowTracking)  # only MLflow tracking opens a parent run
            print(f"MLflow parent run of the {len(jobs)} jobs: {_run_page(first.tracking, self.run_id)}", flush=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        MultirunParentRun._current = self

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Called where the job ran: here under Hydra's basic launcher; a launcher's worker process has its copy."""
        completed = job_return.status == JobStatus.COMPLETED
        self.outcomes.append(JobOutcome(self._swept(job_return.overrides or []),
                                        "FINISHED" if completed else "FAILED",
                                        dict(job_return.return_value) if completed else {}))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._end("FINISHED")

    def _end(self, status: str) -> None:
        MultirunParentRun._current = None
        run_id, self.run_id = self.run_id, None
        if run_id:
            from pipeline import tracking

            assert isinstance(self.tracking, MlflowTracking)
            tracking.end_parent_run(self.tracking, run_id, status)
        if self.job_labels and status != "KILLED":  # a multirun's end (a single run has no labels); Ctrl-C: at once
            outcomes = self._outcomes(run_id)
            groups = self._seed_groups(outcomes or [])
            if groups and run_id:  # on the closed parent run: MLflow takes metrics and artifacts after the end
                from pipeline import tracking

                assert isinstance(self.tracking, MlflowTracking)
                tracking.log_seed_groups(self.tracking, run_id, seed_groups.parent_metrics(groups),
                                         seed_groups.csv_text(groups))
            print("\n" + "\n".join(self._report(status, run_id, outcomes, groups)), flush=True)

    def _outcomes(self, run_id: str | None) -> list[JobOutcome] | None:
        """The jobs' outcomes: from the jobs' MLflow runs when tracked (whichever process ran them), else from what
        Hydra handed back here (the basic launcher's jobs); None when there is neither."""
        if isinstance(self.tracking, MlflowTracking) and run_id:
            return self._recorded_outcomes(self.tracking, run_id)
        return self.outcomes or None

    def _seed_groups(self, outcomes: list[JobOutcome]) -> list[seed_groups.SeedGroup]:
        if seed_groups.SEED not in self.swept_keys:
            return []
        finished = [(outcome.overrides, outcome.metrics) for outcome in sorted(outcomes, key=self._job_number)
                    if outcome.status == "FINISHED"]
        return seed_groups.summarise(finished, [*TEST_METRICS, best_metric(self.checkpoint)])

    def _report(self, status: str, run_id: str | None, outcomes: list[JobOutcome] | None,
                groups: list[seed_groups.SeedGroup]) -> list[str]:
        """The jobs' table, then their statistics over seeds, then the parent run's link."""
        heading = f"Multirun of {self.jobs} jobs: {status}"
        if outcomes is None:
            return [f"{heading}; with tracking=none the launcher's processes hand back no results: each job's test "
                    f"metrics are in {self.sweep_dir}/<job number>/metrics.json"]
        lines = [heading, f"{'job':>3}  {'status':<8}  " + "  ".join(TEST_METRICS) + "  overrides"]
        for outcome in sorted(outcomes, key=self._job_number):
            number = self._job_number(outcome)
            metrics = "  ".join(f"{outcome.metrics[name]:>{len(name)}.4f}" if name in outcome.metrics
                                else f"{'-':>{len(name)}}" for name in TEST_METRICS)
            lines.append(f"{number if number < self.jobs else '-':>3}  {outcome.status:<8}  {metrics}  "
                         f"{outcome.overrides or '-'}")
        if groups:
            lines += ["", *seed_groups.table(groups)]
        if isinstance(self.tracking, MlflowTracking) and run_id:
            lines.append(f"MLflow parent run of the {self.jobs} jobs: {_run_page(self.tracking, run_id)}")
        return lines

    def _recorded_outcomes(self, tracking: MlflowTracking, run_id: str) -> list[JobOutcome]:
        from mlflow import MlflowClient
        from mlflow.entities import Run
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        client = MlflowClient(tracking_uri(tracking))
        children = client.search_runs([client.get_run(run_id).info.experiment_id],
                                      filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{run_id}'")
        over_seeds = seed_groups.SEED in self.swept_keys  # then each job's best epoch value too (its history)
        if over_seeds:
            from pipeline.tracking.epochs import metric_name  # Keras: imported already, unless a launcher ran the jobs

            monitored = metric_name(self.checkpoint.monitor)

        def metrics(child: Run) -> dict[str, float]:
            recorded = {name: child.data.metrics[name] for name in TEST_METRICS if name in child.data.metrics}
            if over_seeds:
                history = [point.value for point in client.get_metric_history(child.info.run_id, monitored)]
                recorded[best_metric(self.checkpoint)] = seed_groups.best_value(history, self.checkpoint.mode)
            return recorded

        return [JobOutcome(self._swept(child.data.tags.get("overrides", "").split()), child.info.status,
                           metrics(child)) for child in children]

    def _job_number(self, outcome: JobOutcome) -> int:
        """Its place among the jobs, found by its swept overrides (self.jobs if they name none)."""
        return self.job_labels.index(outcome.overrides) if outcome.overrides in self.job_labels else self.jobs

    def _swept(self, overrides: Sequence[str]) -> str:
        return " ".join(o for o in overrides if o.split("=", 1)[0] in self.swept_keys)

    @classmethod
    @contextlib.contextmanager
    def ended_with_the_jobs(cls) -> Iterator[None]:
        """Around the Hydra app: Hydra calls on_multirun_end only when every job succeeded; otherwise the parent
        run still open ends here, FAILED (a job failed) or KILLED (Ctrl-C, SIGTERM)."""
        try:
            yield
        except Exception:
            if cls._current:
                cls._current._end("FAILED")
            raise
        except BaseException:
            if cls._current:
                cls._current._end("KILLED")
            raise


def _swept_keys(jobs: list[list[str]]) -> set[str]:
    """The keys whose value differs between the jobs (every key when none does); all jobs list the same keys."""
    varying = {job[i].split("=", 1)[0] for job in jobs for i in range(len(job)) if job[i] != jobs[0][i]}
    return varying or {override.split("=", 1)[0] for override in jobs[0]}


def run_job(cfg: DictConfig) -> dict[str, float]:
    """One pipeline run in Hydra's output folder, its output also in the folder's log file; its test metrics and
    best epoch value (best_<checkpoint monitor>), which Hydra hands to the callbacks (`JobReturn.return_value`)."""
    hydra = HydraConfig.get()
    output_dir = Path(hydra.runtime.output_dir)
    OmegaConf.update(cfg, "output_dir", str(output_dir))
    if hydra.output_subdir:
        redact_files(output_dir / hydra.output_subdir)  # Hydra wrote the command line there as typed
    multirun = MultirunParentRun.current()
    _pin_to_share(cfg, hydra, multirun.jobs if multirun else 1)
    with teed_to(output_dir / f"{hydra.job.name}.log"):
        with stop.deferred():  # a Ctrl-C inside TensorFlow's import too waits for the run's next safe point
            from pipeline.core import RunOptions, run_pipeline  # imports TensorFlow: once per process
            from pipeline.memory import release_memory

            started = time.perf_counter()
            try:
                # Validated again: Hydra composed this job anew, in the process that runs it (a launcher's too).
                result = run_pipeline(validate(cfg), RunOptions(overrides=list(hydra.overrides.task),
                                                                parent_run_id=multirun.run_id if multirun else None))
            finally:
                if hydra.mode == RunMode.MULTIRUN:
                    release_memory()  # the next job starts from a clean slate, as a sweep's next trial does
        print(f"\nTest metrics ({time.perf_counter() - started:.1f} s, output in {result.output_dir}):")
        for name in TEST_METRICS:
            print(f"  {name:<14} {result.test_metrics[name]:.4f}")
        if result.run_id:
            assert isinstance(result.settings.tracking, MlflowTracking)
            print(f"MLflow run {result.run_id}: {_run_page(result.settings.tracking, result.run_id)}")
        if result.model_id:
            print(f"Model models:/{result.model_id} (python -m pipeline.evaluate model=models:/{result.model_id})")
    if result.run_id:
        from pipeline.tracking import attach_console_log

        attach_console_log(result.settings, result.run_id, output_dir)
    checkpoint = result.settings.trainer.checkpoint
    best = seed_groups.best_value(result.history.get(checkpoint.monitor, []), checkpoint.mode)
    return {**result.test_metrics, best_metric(checkpoint): best}


def _pin_to_share(cfg: DictConfig, hydra: HydraConf, jobs: int) -> None:
    """Under a launcher running jobs in parallel processes (joblib's n_jobs), this job's share of the cores and
    GPUs, as sweep workers get theirs; device.*_op_threads set by the user win."""
    n_jobs = hydra.launcher.get("n_jobs")
    if n_jobs is None:
        return
    cpus = os.cpu_count() or 1
    processes = min(parallel_processes(int(n_jobs), cpus), jobs)
    if processes == 1:
        return
    slot = plan_slots(processes, cpus, visible_gpus())[hydra.job.num % processes]
    for key, value in slot.thread_settings(cfg.device.intra_op_threads, cfg.device.inter_op_threads).items():
        OmegaConf.update(cfg, key, value)
    if slot.gpu is not None and "tensorflow" not in sys.modules:  # a worker process's first job
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu


def _run_page(tracking: MlflowTracking, run_id: str) -> str:
    from pipeline.tracking.links import run_page_with_hint

    return run_page_with_hint(tracking, run_id)
