"""Seed an empty store with the shipped sample traces, and summarise what a store holds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from console.clock import utc_now
from console.store import importer
from console.store.db import first_row

SUMMARY_TABLES = ("traces", "outcomes", "evals", "audit_log")


def sample_traces_dir() -> Path:
    override = os.environ.get("FLEETDECK_SAMPLE_TRACES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "sample_traces"


@dataclass(frozen=True)
class SampleImport:
    """The first run's import of the sample traces, decided before any call is recorded.

    The sample ends at `end`, the moment the store was found empty: a call served while
    the import runs (the console opens its gateway first) starts later than every sample
    trace, so it stays at the top of the live stream, and its trace never makes the store
    look seeded already.
    """

    end: datetime

    def run(self, cur: duckdb.DuckDBPyConnection, progress: importer.Progress | None = None) -> int:
        """Import; the number of rows inserted."""
        done = importer.import_files(cur, [sample_traces_dir()], rebase_to=self.end, progress=progress)
        return sum(item.inserted for item in done)


def first_run(cur: duckdb.DuckDBPyConnection) -> SampleImport | None:
    """The sample import to run when the store has no traces yet, else None."""
    (stored,) = first_row(cur, "SELECT count(*) FROM traces")
    return None if stored else SampleImport(end=utc_now())


def seed_if_empty(cur: duckdb.DuckDBPyConnection) -> int:
    """Import the sample traces, rebased to end now, when the store has no traces.

    Returns the number of rows imported (0 when the store already had traces).
    """
    pending = first_run(cur)
    return pending.run(cur) if pending else 0


def summary(cur: duckdb.DuckDBPyConnection, db_path: Path) -> str:
    counts = []
    for table in SUMMARY_TABLES:
        (count,) = first_row(cur, f"SELECT count(*) FROM {table}")
        counts.append(f"{table} {count or 0:,}")
    lines = [f"Store {db_path}: " + ", ".join(counts)]
    span = first_row(cur, "SELECT min(ts_start), max(ts_start) FROM traces")
    if span[0] is not None:
        lines.append(f"Traces from {span[0]:%Y-%m-%d %H:%M} to {span[1]:%Y-%m-%d %H:%M} UTC")
    by_workflow = cur.execute(
        "SELECT workflow_id, count(*), sum(cost_usd), avg((status IN ('error', 'partial'))::INT) "
        "FROM traces GROUP BY ALL ORDER BY 3 DESC NULLS LAST"
    ).fetchall()
    for workflow, calls, cost, error_rate in by_workflow:
        lines.append(
            f"  {workflow or '-':28} {calls:>8,} calls  ${cost or 0:>10,.2f}  errors {error_rate:.1%}"
        )
    return "\n".join(lines)
