"""The jobs of one command line: every job's config checked before the first one starts, then each run.

`check_job` is the one place a job's config is checked without TensorFlow; `run_job` is Hydra's task function,
called once per job, in this process (TensorFlow imported once) or in a launcher's worker process.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pipeline import cluster
from pipeline.compose import compose_config, validate
from pipeline.config import CONF_DIR, MlflowTracking, Settings
from pipeline.credentials import redact_files
from pipeline.data import load_data
from pipeline.errors import PipelineError
from pipeline.run_log import teed_to
from pipeline.tracking.store import check_store, tracking_uri
from pipeline.worker_slots import parallel_processes, plan_slots, visible_gpus

# What a multirun's jobs share, read by jobs in this process and inherited by a launcher's worker processes.
PARENT_RUN_ENV = "KERASTRACK_PARENT_RUN_ID"  # their MLflow parent run
JOBS_ENV = "KERASTRACK_MULTIRUN_JOBS"  # how many there are
OUTPUT_DIR_ALIAS = "output_dir="  # the pipeline's older name for Hydra's output folder


def hydra_overrides(overrides: list[str], multirun: bool) -> list[str]:
    """`output_dir=<d>` as Hydra's own key: hydra.run.dir, or hydra.sweep.dir with -m (each job in a subdir)."""
    folder_key = "hydra.sweep.dir=" if multirun else "hydra.run.dir="
    return [folder_key + o.removeprefix(OUTPUT_DIR_ALIAS) if o.startswith(OUTPUT_DIR_ALIAS) else o for o in overrides]


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Each job's overrides, the sweep syntax (a,b / range / glob / choice) expanded as Hydra's basic sweeper does."""
    if not multirun:
        return [overrides]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):  # glob() lists a group's options
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        parsed = parser.parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]


def check_job(overrides: list[str]) -> Settings:
    """A job's config composed and validated: what must hold before any TensorFlow work starts."""
    settings = validate(compose_config(overrides))
    load_data(settings.data)  # bad data fails here too; run_pipeline reuses this read (load_data keeps it)
    if settings.device.name == "multi_worker":
        cluster.from_environment()  # a malformed TF_CONFIG
    if isinstance(settings.tracking, MlflowTracking):
        check_store(tracking_uri(settings.tracking))  # an unwritable store, a server down or refusing the login
    return settings


def check_jobs(overrides: list[str], multirun: bool) -> list[Settings]:
    """Every job checked, so a bad value in the last job fails before the first one trains."""
    jobs = job_overrides(overrides, multirun)
    checked = []
    for number, job in enumerate(jobs):
        try:
            checked.append(check_job(job))
        except PipelineError as error:
            raise PipelineError(f"job #{number} of {len(jobs)}: {error}" if multirun else str(error)) from None
    return checked


@contextlib.contextmanager
def grouped(checked: list[Settings], overrides: list[str]) -> Iterator[None]:
    """A multirun's MLflow parent run (with the first job's tracking settings) and job count, made known to its jobs."""
    from pipeline import tracking  # numpy, and MLflow unless tracking=none: not before the config is checked

    tags = {"overrides": " ".join(overrides), "jobs": str(len(checked)), "mlflow.source.name": "pipeline.run -m"}
    with tracking.grouping_run(checked[0], name=f"multirun-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags) as run_id:
        shared = {JOBS_ENV: str(len(checked)), **({PARENT_RUN_ENV: run_id} if run_id else {})}
        if run_id:
            print(f"MLflow parent run of the {len(checked)} jobs: {_run_page(checked[0], run_id)}", flush=True)
        os.environ.update(shared)
        try:
            yield
        finally:
            for key in shared:
                del os.environ[key]


def run_job(cfg: DictConfig) -> None:
    """One pipeline run in Hydra's output folder, its output also in the folder's log file."""
    hydra = HydraConfig.get()
    output_dir = Path(hydra.runtime.output_dir)
    OmegaConf.update(cfg, "output_dir", str(output_dir))
    if hydra.output_subdir:
        redact_files(output_dir / hydra.output_subdir)  # Hydra wrote the command line there as typed
    _pin_to_share(cfg, hydra)
    with teed_to(output_dir / f"{hydra.job.name}.log"):
        from pipeline.core import RunOptions, run_pipeline  # imports TensorFlow: once per process
        from pipeline.memory import release_memory

        started = time.perf_counter()
        try:
            # Validated again: Hydra composed this job anew, in the process that runs it (a launcher's too).
            result = run_pipeline(validate(cfg), RunOptions(overrides=list(hydra.overrides.task),
                                                            parent_run_id=os.environ.get(PARENT_RUN_ENV)))
        finally:
            if hydra.mode == RunMode.MULTIRUN:
                release_memory()  # the next job starts from a clean slate, as a sweep's next trial does
        print(f"\nTest metrics ({time.perf_counter() - started:.1f} s, output in {result.output_dir}):")
        for name in ("test_loss", "test_accuracy", "test_f1_macro"):
            print(f"  {name:<14} {result.test_metrics[name]:.4f}")
        if result.run_id:
            print(f"MLflow run {result.run_id}: {_run_page(result.settings, result.run_id)}")
        if result.model_id:
            print(f"Model models:/{result.model_id} (python -m pipeline.evaluate model=models:/{result.model_id})")
    if result.run_id:
        from pipeline.tracking import attach_console_log

        attach_console_log(result.settings, result.run_id, output_dir)


def _pin_to_share(cfg: DictConfig, hydra: DictConfig) -> None:
    """Under a launcher running jobs in parallel processes (joblib's n_jobs), this job's share of the cores and
    GPUs, as sweep workers get theirs; device.*_op_threads set by the user win."""
    n_jobs = hydra.launcher.get("n_jobs")
    if n_jobs is None:
        return
    cpus = os.cpu_count() or 1
    processes = min(parallel_processes(int(n_jobs), cpus), int(os.environ.get(JOBS_ENV, cpus)))
    if processes == 1:
        return
    slot = plan_slots(processes, cpus, visible_gpus())[hydra.job.num % processes]
    for key, value in slot.thread_settings(cfg.device.intra_op_threads, cfg.device.inter_op_threads).items():
        OmegaConf.update(cfg, key, value)
    if slot.gpu is not None and "tensorflow" not in sys.modules:  # a worker process's first job
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu


def _run_page(settings: Settings, run_id: str) -> str:
    from pipeline.tracking.links import run_page_with_hint

    assert isinstance(settings.tracking, MlflowTracking)
    return run_page_with_hint(settings.tracking, run_id)
