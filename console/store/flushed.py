"""What one flush of the recorder stored, and who hears of it.

The recorder's writer calls every listener after each live segment is committed, on the
writer's thread, with a `Flushed`: how many rows of each table went in and the stored
traces themselves (the Arrow table the insert was made from, so nothing is copied or
queried again). A listener must be quick and must not block: the console's posts a
message to its event loop and returns. A listener that raises is logged and kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

log = logging.getLogger("fleetdeck.recorder")


@dataclass(frozen=True)
class Flushed:
    """One committed flush: rows stored per table (`traces`, `payloads`, `outcomes`, `evals`,
    `stored_responses`, `audit`; a table with none is absent) and the stored traces."""

    counts: Mapping[str, int] = field(default_factory=dict)
    traces: pa.Table | None = None  # the traces table's columns, one row per stored trace
    at: float = field(default_factory=time.monotonic)  # committed by then: a query begun later sees it

    @property
    def trace_count(self) -> int:
        return self.counts.get("traces", 0)

    def touches(self, tables: frozenset[str]) -> bool:
        """Whether any of these tables got rows in this flush."""
        return any(self.counts.get(table) for table in tables)


Listener = Callable[[Flushed], None]


class FlushListeners:
    """A registry of callbacks, safe to change from any thread while the writer notifies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()

    def add(self, listener: Listener) -> Callable[[], None]:
        """Hear every flush from now on; returns the function that stops it."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return remove

    def __len__(self) -> int:
        return len(self._listeners)

    def notify(self, flushed: Flushed) -> None:
        for listener in self._listeners:  # a snapshot: the tuple is replaced, never changed
            try:
                listener(flushed)
            except Exception:
                log.exception("a flush listener failed")
