"""Quality drift for the Drift pane: the statistics of console/quality/drift and the latest alerts.

The pane only computes (the last 7 days against the 28 before, ending at the console's
clock); storing, auditing and posting alerts is the Engine's drift monitor's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from console.quality import drift
from console.store import queries

RECENT_ALERTS = 20


@dataclass(frozen=True)
class DriftView:
    report: drift.DriftReport
    recent_alerts: list[dict[str, Any]]

    @property
    def raised(self) -> list[drift.Statistic]:
        return self.report.raised


def snapshot(cur: duckdb.DuckDBPyConnection, now: datetime) -> DriftView:
    report = drift.compute(cur, drift.Windows(now))
    recent = queries.run(cur, "drift_alerts", {"to": now, "limit": RECENT_ALERTS}).to_pylist()
    return DriftView(report, recent)
