"""`python -m pipeline.server_guard PARENT_PID COMMAND...`: run a server (MLflow's, TensorBoard's) for pipeline.ui so
that it never outlives pipeline.ui, even when pipeline.ui is killed with SIGKILL.

The guard leads the server's process group (pipeline.ui starts it in a session of its own). On Linux the kernel sends
it SIGTERM when its parent dies (PR_SET_PDEATHSIG), and it passes every SIGTERM on to its whole group: MLflow's
launcher and the uvicorn it starts, TensorBoard and its data server. Elsewhere the guard only runs the command.
Standard library only: it starts in milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent() -> None:
    """SIGTERM to this process when its parent dies (Linux); nothing where prctl does not exist."""
    prctl = getattr(ctypes.CDLL(None), "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_group(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group includes this process
    os.killpg(0, signal.SIGTERM)


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[1:]
    signal.signal(signal.SIGTERM, _stop_group)
    _stop_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 1
    server = subprocess.Popen(command)
    return server.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
