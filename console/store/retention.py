"""Retention: what the store keeps, and for how long (settings `*_retention_days`).

Three windows, counted back from now:

- payloads: redacted request and response bodies (`payloads`), the cached answers
  made of them (`cache_entries`), the responses the Responses API stored
  (`stored_responses`, redacted like payloads), and the pointer a kept trace has to a purged body
  (`traces.payload_ref` is cleared, so no trace names a body that is gone);
- traces: calls (`traces`), with their evals, their bodies, and the outcomes reported
  in that time (`outcomes`);
- audit: audit entries are never deleted, so the hash chain and its signed checkpoints
  verify as before; past audit retention an entry's payload is dropped, which `verify`
  accepts because the entry keeps the payload's hash.

Each table has one condition; a dry run counts the rows it matches, an apply deletes
them in one transaction, so the two agree. A purge that deletes anything is one audit
entry (`retention.applied`) with the counts. Costs, outcomes and verdicts of kept traces
do not depend on payloads, so a payload purge changes no cost-per-outcome or scorecard
figure. The serving Engine applies retention every `retention_interval_s` on a thread of
its own (first run after one interval); `fleetdeck retention apply` on demand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from console.clock import utc_now
from console.periodic import Periodic
from console.progress import Progress, Step, silent
from console.store import audit, rollups
from console.store.db import Database
from console.store.recorder import Recorder

log = logging.getLogger("fleetdeck.retention")
JOB = "retention"  # the job `progress` hears about: a step per table purged
ACTOR = "fleetdeck:retention"
OLD_TRACES = "SELECT request_id FROM traces WHERE ts_start < $traces_before"
OLD_PAYLOADS = f"ts < $payloads_before OR request_id IN ({OLD_TRACES})"
OLD_PAYLOAD_REFS = f"SELECT payload_ref FROM payloads WHERE {OLD_PAYLOADS}"


@dataclass(frozen=True)
class Purge:
    """One table's share of a purge: the rows `condition` matches are deleted (or updated)."""

    name: str  # as printed: a table, or table.column for a cleared column
    table: str
    condition: str
    change: str = "DELETE"  # or an UPDATE's SET clause

    def count_sql(self) -> str:
        return f"SELECT count(*) FROM {self.table} WHERE {self.condition}"

    def apply_sql(self) -> str:
        if self.change == "DELETE":
            return f"DELETE FROM {self.table} WHERE {self.condition}"
        return f"UPDATE {self.table} SET {self.change} WHERE {self.condition}"


# In the order they run: what refers to a row goes before the row.
PURGES = (
    Purge("cache_entries", "cache_entries", "created_at < $payloads_before"),
    Purge(
        "stored_responses",
        "stored_responses",
        f"created_at < $payloads_before OR request_id IN ({OLD_TRACES})",
    ),
    Purge(
        "traces.payload_ref",
        "traces",
        f"ts_start >= $traces_before AND payload_ref IN ({OLD_PAYLOAD_REFS})",
        change="payload_ref = NULL",
    ),
    Purge("payloads", "payloads", OLD_PAYLOADS),
    Purge("evals", "evals", f"request_id IN ({OLD_TRACES})"),
    Purge("traces", "traces", "ts_start < $traces_before"),
    Purge("outcomes", "outcomes", "ts < $traces_before"),
)
AUDIT_PAYLOADS = "audit_log.payload"  # cleared by audit.clear_payloads, entries kept


@dataclass(frozen=True)
class Windows:
    payload_days: int
    trace_days: int
    audit_days: int

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        return {
            "payloads_before": now - timedelta(days=self.payload_days),
            "traces_before": now - timedelta(days=self.trace_days),
            "audit_before": now - timedelta(days=self.audit_days),
        }


@dataclass(frozen=True)
class RetentionRun:
    dry_run: bool
    windows: Windows
    cutoffs: dict[str, datetime]
    rows: dict[str, int]  # per Purge.name (and AUDIT_PAYLOADS): matched, or deleted when applied

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "retention_days": {
                "payloads": self.windows.payload_days,
                "traces": self.windows.trace_days,
                "audit": self.windows.audit_days,
            },
            "cutoffs": {name: when.isoformat() for name, when in self.cutoffs.items()},
            "rows": self.rows,
        }


def count(cur: duckdb.DuckDBPyConnection, cutoffs: Mapping[str, datetime]) -> dict[str, int]:
    """What a purge at these cutoffs would take, per table."""
    rows = {purge.name: _scalar(cur, purge.count_sql(), cutoffs) for purge in PURGES}
    rows[AUDIT_PAYLOADS] = _scalar(
        cur,
        "SELECT count(*) FROM audit_log WHERE ts < $audit_before AND payload IS NOT NULL",
        cutoffs,
    )
    return rows


def purge(
    cur: duckdb.DuckDBPyConnection, cutoffs: Mapping[str, datetime], progress: Progress = silent
) -> dict[str, int]:
    """Delete what retention no longer keeps, in one transaction; the rows taken per table.
    `progress` hears a step per table, then the rollups and the audit payloads."""
    with rollups.REWRITE_LOCK:
        return _purge(cur, cutoffs, progress)


def _purge(
    cur: duckdb.DuckDBPyConnection, cutoffs: Mapping[str, datetime], progress: Progress
) -> dict[str, int]:
    rows: dict[str, int] = {}
    total = len(PURGES) + 2
    cur.execute("BEGIN")
    try:
        for done, step in enumerate(PURGES):
            progress(Step(done, total, JOB))
            rows[step.name] = _scalar(cur, step.apply_sql(), cutoffs)
        progress(Step(len(PURGES), total, JOB))
        rollups.after_purge(cur, cutoffs["traces_before"])
        progress(Step(len(PURGES) + 1, total, JOB))
        rows[AUDIT_PAYLOADS] = audit.clear_payloads(cur, cutoffs["audit_before"])
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return rows


def _scalar(cur: duckdb.DuckDBPyConnection, sql: str, cutoffs: Mapping[str, datetime]) -> int:
    used = {name: when for name, when in cutoffs.items() if f"${name}" in sql}
    found = cur.execute(sql, used).fetchall()
    return int(found[0][0]) if found else 0


def audit_event(run: RetentionRun, actor: str, actor_kind: str) -> audit.AuditEvent:
    return audit.AuditEvent(
        actor=actor,
        actor_kind=actor_kind,
        action="retention.applied",
        subject="store",
        payload={key: value for key, value in run.as_json().items() if key != "dry_run"},
    )


class Retention:
    """Applies the retention windows to the store; one run at a time."""

    def __init__(
        self,
        db: Database,
        recorder: Recorder,
        windows: Windows,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._db, self._recorder, self.windows, self._clock = db, recorder, windows, clock
        self._lock = threading.Lock()
        self.schedule = Periodic("retention", self.apply)  # hourly in the serving Engine
        self.progress: Progress = silent  # hears a purge's steps (the Engine's progress)

    def apply(self, dry_run: bool = False, actor: str = ACTOR, actor_kind: str = "system") -> RetentionRun:
        with self._lock:
            cur = self._db.cursor()
            cutoffs = self.windows.cutoffs(self._clock())
            if dry_run:
                rows = count(cur, cutoffs)
            else:
                try:
                    rows = purge(cur, cutoffs, self.progress)
                finally:
                    self.progress(Step(1, 1, JOB))  # over, also when it failed
            run = RetentionRun(dry_run, self.windows, cutoffs, rows)
            if not dry_run and run.total:
                self._recorder.record_audit(audit_event(run, actor, actor_kind))
            return run

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The admin API's `retention` action: {"dry_run": bool, "actor": str}."""
        actor = str(request.get("actor") or ACTOR)
        run = self.apply(bool(request.get("dry_run")), actor, "system" if actor == ACTOR else "human")
        return run.as_json()


def render(doc: Mapping[str, Any]) -> str:
    """`fleetdeck retention apply`'s report: one line per table."""
    days, cutoffs, rows = doc["retention_days"], doc["cutoffs"], doc["rows"]
    verb = "would delete" if doc["dry_run"] else "deleted"
    dry = " (dry run: nothing deleted)" if doc["dry_run"] else ""
    lines = [
        f"Retention{dry}: payloads {days['payloads']} days "
        f"(before {cutoffs['payloads_before'][:19]}), traces {days['traces']} days "
        f"(before {cutoffs['traces_before'][:19]}), audit payloads {days['audit']} days "
        f"(before {cutoffs['audit_before'][:19]}); audit entries are kept.",
        *[f"{name:<20} {value:>10}" for name, value in rows.items()],
        f"{verb} {sum(rows.values())} rows (columns cleared count as rows).",
    ]
    return "\n".join(lines) + "\n"
