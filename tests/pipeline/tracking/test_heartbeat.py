"""Heartbeats and dead runs on a real store: a live run's stamp moves on, a dead one is closed KILLED with its
checkpoints and a reason, a fresh one (or one keeping a longer stale_after) is never touched, parents beat too."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from pipeline import checkpoint_files
from pipeline.tracking import end_parent_run, heartbeat, open_parent_run
from pipeline.tracking.heartbeat import Heartbeat, close_dead_runs, process_is_gone
from pipeline.tracking.runs import create_run
from pipeline.tracking.store import tracking_uri
from tests.pipeline.tracking.conftest import settings_for


def test_a_heartbeat_records_host_and_pid_and_stamps_the_run_until_stopped(mlflow_store):
    tracking = settings_for(mlflow_store.override, "tracking.stale_after=0.4").tracking
    client = mlflow_store.client()
    run_id = create_run(client, tracking, tracking_uri(tracking))
    with Heartbeat(client, run_id, tracking.stale_after) as beating:
        first = float(client.get_run(run_id).data.tags[heartbeat.HEARTBEAT_TAG])
        time.sleep(4 * beating.interval)
        later = float(client.get_run(run_id).data.tags[heartbeat.HEARTBEAT_TAG])
    tags = client.get_run(run_id).data.tags
    assert later > first
    assert (tags["host"], tags["pid"], tags["stale_after"]) == (socket.gethostname(), str(os.getpid()), "0.4")
    time.sleep(2 * beating.interval)
    assert client.get_run(run_id).data.tags[heartbeat.HEARTBEAT_TAG] == tags[heartbeat.HEARTBEAT_TAG]  # stopped


def test_dead_runs_are_closed_killed_with_their_checkpoints_and_live_ones_are_untouched(mlflow_store, tmp_path,
                                                                                          capsys):
    tracking = settings_for(mlflow_store.override, "tracking.stale_after=5s").tracking
    client, uri = mlflow_store.client(), tracking_uri(tracking)
    long_ago = time.time() - 60
    folder = tmp_path / "out"
    checkpoint_dir = folder / checkpoint_files.FOLDER
    checkpoint_dir.mkdir(parents=True)
    (checkpoint_dir / checkpoint_files.STATE).write_text('{"epochs_done": 1}')
    # Killed between the renames of a save: last.keras counted, its state is still under its temporary name.
    checkpoint_files.temporary(checkpoint_dir, checkpoint_files.STATE).write_text('{"epochs_done": 2}')

    def running(**tags: str) -> str:
        return create_run(client, tracking, uri, tags=tags)

    stale = running(heartbeat=f"{long_ago}", output_dir=str(folder))
    experiment = client.get_run(stale).info.experiment_id
    never_beat = client.create_run(experiment, start_time=int(long_ago * 1000)).info.run_id  # from before heartbeats
    fresh = running(heartbeat=f"{time.time()}")
    patient = running(heartbeat=f"{long_ago}", stale_after="3600")  # keeps to its own, longer stale_after
    finished = running(heartbeat=f"{long_ago}")
    client.set_terminated(finished, "FINISHED")

    assert sorted(close_dead_runs(client, tracking)) == sorted([stale, never_beat])
    status = {run_id: client.get_run(run_id).info.status for run_id in (stale, never_beat, fresh, patient, finished)}
    assert status == {stale: "KILLED", never_beat: "KILLED", fresh: "RUNNING", patient: "RUNNING",
                      finished: "FINISHED"}
    assert client.get_run(stale).data.tags[heartbeat.KILLED_REASON_TAG].startswith("no heartbeat since ")
    reason = client.get_run(never_beat).data.tags[heartbeat.KILLED_REASON_TAG]
    assert re.search(r"no heartbeat, started 6\d s ago", reason), reason  # 60 s, and the seconds this test took
    logged = client.list_artifacts(stale, checkpoint_files.FOLDER)
    assert [item.path for item in logged] == ["checkpoints/state.json"]  # settled: no temporary file went up
    (tmp_path / "fetched").mkdir()
    fetched = client.download_artifacts(stale, "checkpoints/state.json", str(tmp_path / "fetched"))
    assert json.loads(Path(fetched).read_text()) == {"epochs_done": 2}
    out = capsys.readouterr().out
    assert out.startswith("tracking: closed 2 run(s) of experiment kerastrack KILLED") and "resume=last" in out
    assert close_dead_runs(client, tracking) == [] and capsys.readouterr().out == ""  # one line, only when closing


def test_a_multiruns_parent_run_beats_until_it_ends_and_is_never_closed_meanwhile(mlflow_store):
    tracking = settings_for(mlflow_store.override, "tracking.stale_after=0.5").tracking
    parent = open_parent_run(tracking, name="multirun", tags={})
    assert parent is not None
    time.sleep(1.5)  # three times its stale_after
    assert close_dead_runs(mlflow_store.client(), tracking) == []
    end_parent_run(tracking, parent, "FINISHED")
    assert mlflow_store.client().get_run(parent).info.status == "FINISHED"


def test_a_process_gone_from_this_machine_is_seen_at_once(mlflow_store):
    tracking = settings_for(mlflow_store.override).tracking
    client = mlflow_store.client()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = {"host": socket.gethostname()}
    alive = create_run(client, tracking, tracking_uri(tracking), tags={**here, "pid": str(os.getpid())})
    dead = create_run(client, tracking, tracking_uri(tracking), tags={**here, "pid": str(gone.pid)})
    elsewhere = create_run(client, tracking, tracking_uri(tracking), tags={"host": "elsewhere", "pid": str(gone.pid)})
    assert [process_is_gone(client.get_run(run_id)) for run_id in (alive, dead, elsewhere)] == [False, True, False]
