"""The drift monitor: computes drift, stores new alerts, audits them and posts them to a webhook.

Run by the Engine that owns the database: on demand (`fleetdeck drift`, directly or
through the running instance's admin API, `/_admin/drift`, which `answer` serves) and,
while serving, every
`drift_interval_s` in a thread of its own. An alert is stored in `alerts` first, then
audited (`alert.raised`, kind drift), then posted; its id names the workflow, metric,
component, severity and the window's slot, so it is raised once per slot however often
drift runs. A webhook that fails loses nothing: the run reports what failed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import duckdb
import httpx

from console.clock import utc_now
from console.errors import Invalid
from console.periodic import Periodic
from console.progress import Progress, Step, silent
from console.quality import drift
from console.store import audit
from console.store.db import Database
from console.store.recorder import Recorder

log = logging.getLogger("fleetdeck.drift")
JOB = "drift"  # the job `progress` hears about: statistics, alerts stored, webhook
ACTOR = "fleetdeck:drift"
WEBHOOK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DriftRun:
    report: drift.DriftReport
    alerts: list[drift.Alert]  # every alert of the windows
    new_alert_ids: set[str] = field(default_factory=set)  # those stored by this run
    webhook_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        windows = self.report.windows
        return {
            "as_of": windows.as_of.isoformat(),
            "window": {"start": windows.start.isoformat(), "end": windows.as_of.isoformat()},
            "baseline": {"start": windows.baseline_start.isoformat(), "end": windows.start.isoformat()},
            "statistics": [_statistic_json(item) for item in self.report.statistics],
            "alerts": [
                {**alert.as_json(), "new": alert.alert_id in self.new_alert_ids} for alert in self.alerts
            ],
            "webhook_error": self.webhook_error,
        }


def _statistic_json(item: drift.Statistic) -> dict[str, Any]:
    return {
        "workflow_id": item.workflow_id,
        "metric": item.metric.value,
        "component": item.component,
        "baseline": item.baseline,
        "current": item.current,
        "change": item.change,
        "baseline_n": item.baseline_n,
        "current_n": item.current_n,
        "test": item.test,
        "score": item.score,
        "level": item.level.value,
        "detail": item.detail,
    }


class DriftMonitor:
    def __init__(
        self,
        db: Database,
        recorder: Recorder,
        webhook_url: str | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db = db
        self._recorder = recorder
        self._webhook_url = webhook_url
        self._clock = clock
        self._lock = threading.Lock()  # one run at a time, so an alert is stored once
        self.schedule = Periodic("drift", self._scheduled_run)  # hourly in the serving Engine
        self.progress: Progress = silent  # hears each run's three steps (the Engine's progress)

    def run(self, as_of: datetime | None = None, workflow: str | None = None) -> DriftRun:
        with self._lock:
            self.progress(Step(0, 3, JOB))
            try:
                cur = self._db.cursor()
                now = self._clock()
                report = drift.compute(cur, drift.Windows(as_of or now), workflow)
                self.progress(Step(1, 3, JOB))
                alerts = report.alerts(now)
                new = store_new(cur, alerts)
                for alert in new:
                    self._recorder.record_audit(audit_event(alert))
                self.progress(Step(2, 3, JOB))
                error = post_webhook(self._webhook_url, new) if self._webhook_url and new else None
            finally:
                self.progress(Step(3, 3, JOB))  # over, also when it failed: nothing stays under way
            return DriftRun(report, alerts, {alert.alert_id for alert in new}, error)

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The admin API's `/_admin/drift`: `{"as_of": ISO date or time | None, "workflow": … | None}`."""
        as_of, workflow = request.get("as_of"), request.get("workflow")
        if as_of is not None and not isinstance(as_of, str):
            raise Invalid("as_of must be an ISO date or date-time string")
        if workflow is not None and not isinstance(workflow, str):
            raise Invalid("workflow must be a string")
        return self.run(parse_as_of(as_of), workflow or None).as_json()

    def _scheduled_run(self) -> None:
        found = self.run()
        if found.webhook_error:
            log.warning("%s", found.webhook_error)


def parse_as_of(text: str | None) -> datetime | None:
    """An ISO date or date-time (UTC unless it names an offset) as naive UTC; None for now."""
    if text is None or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(
            f"--as-of {text!r}: expected an ISO date or date-time, e.g. 2026-10-19 or 2026-10-19T09:30"
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def store_new(cur: duckdb.DuckDBPyConnection, alerts: list[drift.Alert]) -> list[drift.Alert]:
    """Insert the alerts not stored yet; the ones inserted."""
    if not alerts:
        return []
    ids = [alert.alert_id for alert in alerts]
    found = cur.execute("SELECT alert_id FROM alerts WHERE list_contains(?, alert_id)", [ids]).fetchall()
    stored = {row[0] for row in found}
    new = [alert for alert in alerts if alert.alert_id not in stored]
    if new:
        rows = [alert.row() for alert in new]
        columns = list(rows[0])
        cur.executemany(
            f"INSERT INTO alerts ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [[row[name] for name in columns] for row in rows],
        )
    return new


def audit_event(alert: drift.Alert) -> audit.AuditEvent:
    payload = {
        "kind": "drift",
        "alert_id": alert.alert_id,
        "metric": alert.metric,
        "component": alert.component,
        "baseline": alert.baseline,
        "current": alert.current,
        "severity": alert.severity,
        "window_start": alert.window_start.isoformat(),
        "window_end": alert.window_end.isoformat(),
    }
    return audit.AuditEvent(
        actor=ACTOR,
        actor_kind="system",
        action="alert.raised",
        subject=f"workflow:{alert.workflow_id}",
        payload=payload,
        ts=alert.ts,
    )


def post_webhook(url: str, alerts: list[drift.Alert]) -> str | None:
    """POST the alerts as JSON; None when delivered, else what failed (the URL's path left out)."""
    where = _origin(url)
    body = {"source": "fleetdeck", "kind": "drift", "alerts": [alert.as_json() for alert in alerts]}
    try:
        response = httpx.post(url, json=body, timeout=WEBHOOK_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return f"drift webhook {where} failed ({type(exc).__name__}: {exc}); the alerts are stored"
    if response.status_code >= 300:
        return f"drift webhook {where} answered HTTP {response.status_code}; the alerts are stored"
    return None


def _origin(url: str) -> str:
    """Scheme, host and port only: webhook paths often carry a secret token."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
