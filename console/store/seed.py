"""Seed an empty store with the shipped sample traces, and summarise what a store holds."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from console.store import importer
from console.store.db import first_row

SUMMARY_TABLES = ("traces", "outcomes", "evals", "audit_log")


def sample_traces_dir() -> Path:
    override = os.environ.get("FLEETDECK_SAMPLE_TRACES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "sample_traces"


def seed_if_empty(cur: duckdb.DuckDBPyConnection) -> int:
    """Import the sample traces, rebased to end now, when the store has no traces.

    Returns the number of rows imported (0 when the store already had traces).
    """
    (stored,) = first_row(cur, "SELECT count(*) FROM traces")
    if stored:
        return 0
    done = importer.import_files(cur, [sample_traces_dir()], rebase_to_now=True)
    return sum(item.inserted for item in done)


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
