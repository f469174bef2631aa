"""A serving instance's part in the lake: what it records reaches the lake within a minute.

Every `lake_export_interval_s` the store's new rows are exported (console/lake/export.py)
and this replica's small segments compacted; once more when the instance stops. The
first export of a process reads the whole store, so rows stored before the lake was set,
or replayed from a crashed predecessor's spool, get there too; later ones read only the
rows dated yesterday or later (a day's margin for a trace that started before midnight).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from console.clock import utc_now
from console.lake import layout
from console.lake.compact import compact
from console.lake.export import export
from console.periodic import Periodic
from console.store.db import Database

log = logging.getLogger("fleetdeck.lake")


class LakeShipping:
    def __init__(
        self, db: Database, lake: Path, data_dir: Path, now: Callable[[], datetime] = utc_now
    ) -> None:
        self._db, self.lake, self._now = db, lake, now
        self.replica = layout.replica_id(data_dir)
        self.schedule = Periodic("fleetdeck-lake", self.ship)
        self._lock = threading.Lock()  # the schedule and the final export at stop never overlap
        self._since: str | None = None
        self.shipped = 0  # rows written to the lake by this process

    def ship(self) -> dict[str, int]:
        """Export what is new, then compact this replica's partitions; rows written per table."""
        with self._lock:
            today = self._now().date()
            written = export(self._db, self.lake, self.replica, self._since)
            compact(self.lake, self.replica, open_date=today.isoformat())
            self._since = (today - timedelta(days=1)).isoformat()
            self.shipped += sum(written.values())
            return written

    def stop(self) -> None:
        """The schedule stopped, then one last export: nothing recorded is left out of the lake."""
        self.schedule.stop()
        try:
            self.ship()
        except Exception:
            log.exception("the last export to the lake %s failed; the next start exports it", self.lake)
