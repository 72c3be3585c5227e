"""A daemon thread that calls a function every `interval` seconds until stopped: the heartbeats of runs
(pipeline.tracking.heartbeat) and of sweep trials (sweeps.heartbeat)."""

from __future__ import annotations

import threading
from typing import Callable


class PeriodicThread:
    def __init__(self, interval: float, action: Callable[[], object], name: str):
        self.interval = interval
        self._action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No more calls; waits for one under way."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._action()
