"""device=multi_worker: who is in the cluster, which worker this process is, and a rendezvous before TensorFlow.

The cluster comes from TF_CONFIG (TensorFlow's own convention) or, when that is absent, from a SLURM job step
(`srun`), numbered as TensorFlow's SlurmClusterResolver numbers it (a worker per task, ports from 8888 on each
node). That resolver itself is not used: it needs nvidia-smi, cannot describe CPU-only nodes (0 GPUs per task
breaks it) and reads the allocation only once TensorFlow runs. Everything here is plain Python, so a malformed TF_CONFIG
or a worker that never shows up fails in one line before TensorFlow is imported: TensorFlow itself waits forever
for a missing worker, deaf to SIGTERM.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from pipeline.errors import PipelineError

TF_CONFIG = "TF_CONFIG"
SLURM_PORT = 8888  # SlurmClusterResolver's default port_base
EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
_READY = b"ready"


@dataclass(frozen=True)
class Cluster:
    workers: tuple[str, ...]  # host:port of every worker, in index order
    index: int  # this process's worker index
    source: str  # "TF_CONFIG" or "SLURM"

    @property
    def is_chief(self) -> bool:
        """Worker 0 records the run (MLflow, metrics.json, checkpoints, the model)."""
        return self.index == 0

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(address.rpartition(":")[0] for address in self.workers))

    def describe(self) -> str:
        return f"worker {self.index} of {len(self.workers)} ({self.workers[self.index]}, from {self.source})"


def from_environment() -> Cluster:
    """The cluster this process belongs to, from TF_CONFIG or else SLURM; a one-line error if neither works."""
    raw = os.environ.get(TF_CONFIG)
    if raw is not None:
        return _from_tf_config(raw)
    if "SLURM_STEP_NODELIST" in os.environ and "SLURM_PROCID" in os.environ:
        return _from_slurm()
    raise PipelineError(f"device=multi_worker: {TF_CONFIG} is not set and this is no SLURM job step; "
                        f"set {TF_CONFIG}='{EXAMPLE}' with this worker's index, or start the workers with srun")


def _from_tf_config(raw: str) -> Cluster:
    def bad(problem: str) -> PipelineError:
        return PipelineError(f"device=multi_worker: {TF_CONFIG} {problem}; expected e.g. {EXAMPLE}")

    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise bad(f"is not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(config, dict):
        raise bad(f"is {type(config).__name__}, not an object")
    cluster = config.get("cluster")
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not all(_is_address(worker) for worker in workers):
        raise bad(f"cluster.worker={workers!r} is not a list of host:port addresses")
    assert isinstance(cluster, dict)  # the workers came from it
    if set(cluster) - {"worker"}:
        raise bad(f"has jobs {sorted(set(cluster) - {'worker'})}: only workers are supported (worker 0 is the chief)")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") != "worker":
        raise bad(f"task={task!r} is not {{\"type\": \"worker\", \"index\": <i>}}")
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise bad(f"task.index={index!r} is out of range: the cluster has workers 0..{len(workers) - 1}")
    return Cluster(tuple(workers), index, TF_CONFIG)


def _is_address(worker: object) -> bool:
    host, _, port = str(worker).rpartition(":")
    return isinstance(worker, str) and bool(host) and port.isdigit()


def _from_slurm() -> Cluster:
    """One worker per SLURM task, as SlurmClusterResolver numbers them (tasks in node-list order)."""
    nodes = _expand_nodelist(os.environ["SLURM_STEP_NODELIST"])
    tasks_per_node = _tasks_per_node(os.environ.get("SLURM_STEP_TASKS_PER_NODE", "1"), len(nodes))
    workers = tuple(f"{node}:{SLURM_PORT + slot}"
                    for node, count in zip(nodes, tasks_per_node) for slot in range(count))
    index = int(os.environ["SLURM_PROCID"])
    if not 0 <= index < len(workers):
        raise PipelineError(f"device=multi_worker: SLURM_PROCID={index} is out of range for {len(workers)} tasks")
    return Cluster(workers, index, "SLURM")


def _expand_nodelist(nodelist: str) -> list[str]:
    """'node[01-02,05],gpu7' -> ['node01', 'node02', 'node05', 'gpu7'] (SLURM's compressed host list)."""
    nodes: list[str] = []
    for prefix, ranges, plain in _split_nodelist(nodelist):
        if plain:
            nodes.append(plain)
            continue
        for part in ranges.split(","):
            first, _, last = part.partition("-")
            for number in range(int(first), int(last or first) + 1):
                nodes.append(f"{prefix}{number:0{len(first)}d}")
    return nodes


def _split_nodelist(nodelist: str) -> list[tuple[str, str, str]]:
    entries, depth, start = [], 0, 0
    for position, character in enumerate(nodelist + ","):
        depth += {"[": 1, "]": -1}.get(character, 0)
        if character == "," and depth == 0:
            entry = nodelist[start:position]
            prefix, bracket, ranges = entry.partition("[")
            entries.append((prefix, ranges.rstrip("]"), "") if bracket else ("", "", entry))
            start = position + 1
    return entries


def _tasks_per_node(spec: str, node_count: int) -> list[int]:
    """'2(x3),1' -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in spec.split(","):
        count, _, repeat = part.partition("(x")
        counts += [int(count)] * int(repeat.rstrip(")") or 1)
    return counts[:node_count]


def rendezvous(cluster: Cluster, timeout: float) -> None:
    """Wait until every worker is up, or fail in one line after `timeout` seconds.

    The chief listens on its own TF_CONFIG port (TensorFlow binds it right after); every other worker connects
    there and waits for the chief's word that all have come.
    """
    deadline = time.monotonic() + timeout
    host, _, port = cluster.workers[0].rpartition(":")
    if cluster.is_chief:
        _gather(cluster, int(port), deadline, timeout)
    else:
        _report(cluster, host, int(port), deadline, timeout)


def _gather(cluster: Cluster, port: int, deadline: float, timeout: float) -> None:
    waiting = len(cluster.workers) - 1
    with socket.create_server(("", port), reuse_port=hasattr(socket, "SO_REUSEPORT")) as server:
        joined: list[socket.socket] = []
        try:
            while len(joined) < waiting:
                server.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    connection, _ = server.accept()
                except TimeoutError:
                    raise PipelineError(
                        f"device.join_timeout={timeout:g}: only {len(joined)} of the {waiting} other worker(s) joined "
                        f"{cluster.workers[0]} within {timeout:g} s; start every worker (TF_CONFIG index 1.."
                        f"{waiting}) or raise device.join_timeout") from None
                joined.append(connection)
            for connection in joined:
                connection.sendall(_READY)
        finally:
            for connection in joined:
                connection.close()


def _report(cluster: Cluster, host: str, port: int, deadline: float, timeout: float) -> None:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PipelineError(
                f"device.join_timeout={timeout:g}: the chief (worker 0 at {cluster.workers[0]}) did not gather the "
                f"cluster within {timeout:g} s; start it and every other worker, or raise device.join_timeout")
        try:
            with socket.create_connection((host, port), timeout=remaining) as connection:
                connection.settimeout(max(deadline - time.monotonic(), 0.001))
                if connection.recv(len(_READY)) == _READY:
                    return
        except (ConnectionRefusedError, ConnectionResetError):
            time.sleep(0.2)  # the chief is not listening yet
        except TimeoutError:
            continue
