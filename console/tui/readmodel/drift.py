"""Quality drift for the Drift pane: the statistics of console/quality/drift and the latest alerts.

The pane only computes (the last 7 days against the 28 before, ending at the console's
clock); storing, auditing and posting alerts is the Engine's drift monitor's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from console.quality import drift
from console.store import queries
from console.tui.readmodel import charts
from console.tui.readmodel.charts import WorkflowCharts

RECENT_ALERTS = 20


@dataclass(frozen=True)
class DriftView:
    report: drift.DriftReport
    recent_alerts: list[dict[str, Any]]
    charts: dict[str, WorkflowCharts] = field(default_factory=dict)  # per workflow: both windows

    @property
    def raised(self) -> list[drift.Statistic]:
        return self.report.raised


def snapshot(cur: duckdb.DuckDBPyConnection, now: datetime) -> DriftView:
    windows = drift.Windows(now)
    inputs = drift.load(cur, windows)
    recent = queries.run(cur, "drift_alerts", {"to": now, "limit": RECENT_ALERTS}).to_pylist()
    found = charts.drift_charts(inputs.call_samples, inputs.verdicts, windows.days, windows.baseline_days)
    return DriftView(drift.assess(inputs, windows), recent, found)
