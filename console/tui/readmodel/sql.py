"""The SQL pane's engine room: run one read-only statement with a row cap, cancel it, export it.

Harlequin's habits: the first ROW_CAP rows are kept as Arrow for the table, the rest
are counted while streaming past (memory stays bounded), a statement can be stopped
with the cursor's interrupt(), and an export streams the whole result, batch by batch,
to a file Fleetdeck writes from Arrow (DuckDB itself writes no file: the query surface
reads the store only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import duckdb
import pyarrow as pa

from console import formats
from console.store import adhoc, queries

ROW_CAP = 10_000
BATCH_ROWS = 2048


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


@dataclass(frozen=True)
class SqlResult:
    table: pa.Table  # at most the cap
    total_rows: int
    elapsed_s: float

    @property
    def capped(self) -> bool:
        return bool(self.total_rows > self.table.num_rows)


def run_capped(cur: duckdb.DuckDBPyConnection, sql: str, cap: int = ROW_CAP) -> SqlResult:
    """Run one read-only statement; raises adhoc.QueryRefused, duckdb.Error (InterruptException on cancel)."""
    adhoc.check_read_only(cur, sql)
    started = time.perf_counter()
    cur.execute("BEGIN")
    try:
        reader = cur.sql(sql).to_arrow_reader(BATCH_ROWS)
        kept, total = _take(reader, cap)
    except duckdb.Error as exc:
        raise adhoc.refused_by_duckdb(exc) or exc from None
    finally:
        cur.execute("ROLLBACK")
    table = pa.Table.from_batches(kept, schema=reader.schema)
    return SqlResult(table, total, time.perf_counter() - started)


def _take(reader: pa.RecordBatchReader, cap: int) -> tuple[list[pa.RecordBatch], int]:
    kept: list[pa.RecordBatch] = []
    total, room = 0, cap
    for batch in reader:
        total += batch.num_rows
        if room > 0:
            kept.append(batch.slice(0, room))
            room -= min(room, batch.num_rows)
    return kept, total


def export(cur: duckdb.DuckDBPyConnection, sql: str, path: Path, fmt: ExportFormat) -> int:
    """Write the whole result of a read-only statement to `path`; returns the rows written."""
    adhoc.check_read_only(cur, sql)
    path.parent.mkdir(parents=True, exist_ok=True)
    cur.execute("BEGIN")
    try:
        reader = cur.sql(sql).to_arrow_reader(BATCH_ROWS)
        return formats.write_batches(reader, formats.Format(fmt.value), path)
    except duckdb.Error as exc:
        raise adhoc.refused_by_duckdb(exc) or exc from None
    finally:
        cur.execute("ROLLBACK")


def saved_queries() -> list[queries.NamedQuery]:
    """The named queries of queries/, for the pane's list."""
    return queries.available()


def example_call(query: queries.NamedQuery) -> str:
    """The named query's SQL with its parameters bound to their defaults (NULL), ready to run."""
    sql = queries.SQL_TOKENS.sub(lambda match: "NULL" if match["param"] else match.group(0), query.sql)
    return f"-- {query.name}: {query.purpose}\n{sql}\n"
