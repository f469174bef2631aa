"""A job run every N seconds on a daemon thread until stopped: drift, retention."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("fleetdeck")


class Periodic:
    """Runs `job` every `interval_s` (the first run after one interval) until stop().

    A failing run is logged and the schedule goes on: the next run may succeed.
    """

    def __init__(self, name: str, job: Callable[[], object]) -> None:
        self.name, self._job = name, job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0  # completed scheduled runs, failed ones included
        self.ran = threading.Event()  # set after each scheduled run

    def start(self, interval_s: float) -> None:
        if interval_s <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self._job()
            except Exception:
                log.exception("scheduled %s run failed", self.name)
            self.runs += 1
            self.ran.set()
