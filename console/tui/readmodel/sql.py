"""The SQL pane's engine room: run one read-only statement with a row cap, cancel it, export it.

Harlequin's habits: the first ROW_CAP rows are kept as Arrow for the table, the rest
are counted while streaming past (memory stays bounded), a statement can be stopped
with the cursor's interrupt(), and an export streams the whole result, batch by batch,
to a file Fleetdeck writes from Arrow (DuckDB itself writes no file: the query surface
reads the store only).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import duckdb
import pyarrow as pa

from console import formats
from console.guards import pii
from console.progress import Progress, Step, silent
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


def export(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    path: Path,
    fmt: ExportFormat,
    progress: Progress = silent,
    total_rows: int | None = None,
) -> int:
    """Write the whole result of a read-only statement to `path`; returns the rows written.

    `progress` hears the rows written so far after each batch, of `total_rows` when the run
    before counted them (the pane's result), and the end.
    """
    adhoc.check_read_only(cur, sql)
    path.parent.mkdir(parents=True, exist_ok=True)
    job = f"export to {path.name}"
    cur.execute("BEGIN")
    try:
        reader = cur.sql(sql).to_arrow_reader(BATCH_ROWS)
        progress(Step(0, total_rows, job))
        batches = _counted(reader, job, total_rows, progress)
        counted = pa.RecordBatchReader.from_batches(reader.schema, batches)
        return formats.write_batches(counted, formats.Format(fmt.value), path)
    except duckdb.Error as exc:
        raise adhoc.refused_by_duckdb(exc) or exc from None
    finally:
        cur.execute("ROLLBACK")
        progress(Step(1, 1, job))  # over (written, or failed): nothing stays under way


def _counted(
    reader: pa.RecordBatchReader, job: str, total_rows: int | None, progress: Progress
) -> Iterator[pa.RecordBatch]:
    done = 0
    for batch in reader:
        yield batch
        done += batch.num_rows
        if total_rows is None or done < total_rows:  # the end is told once, by export()
            progress(Step(done, total_rows, job))


def saved_queries() -> list[queries.NamedQuery]:
    """The named queries of queries/, for the pane's list."""
    return queries.available()


def example_call(query: queries.NamedQuery) -> str:
    """The named query's SQL with its parameters bound to their defaults (NULL), ready to run."""
    sql = queries.SQL_TOKENS.sub(lambda match: "NULL" if match["param"] else match.group(0), query.sql)
    return f"-- {query.name}: {query.purpose}\n{sql}\n"


# The catalog, completion and history (Harlequin's data catalog, autocomplete, query history).

KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT", "OFFSET", "JOIN", "LEFT JOIN",
    "INNER JOIN", "ON", "USING", "AS", "AND", "OR", "NOT", "NULL", "IS", "IN", "LIKE", "ILIKE", "BETWEEN",
    "CASE", "WHEN", "THEN", "ELSE", "END", "DISTINCT", "COUNT", "SUM", "AVG", "MIN", "MAX", "WITH",
    "UNION", "ALL", "DESC", "ASC", "COALESCE", "CAST", "FILTER", "QUALIFY", "OVER", "PARTITION BY",
    "QUANTILE_CONT", "DESCRIBE", "SUMMARIZE",
)  # fmt: skip
WORD_BEFORE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
HISTORY_CAP = 200
HISTORY_FILE = "sql_history.jsonl"


@dataclass(frozen=True)
class CatalogTable:
    name: str
    kind: str  # BASE TABLE or VIEW
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type)


def load_catalog(cur: duckdb.DuckDBPyConnection) -> list[CatalogTable]:
    """The store's tables and views with their columns (queries/sql_catalog.sql)."""
    rows = queries.run(cur, "sql_catalog").to_pylist()
    tables: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for row in rows:
        _, columns = tables.setdefault(row["table_name"], (row["kind"], []))
        columns.append((row["column_name"], row["data_type"]))
    return [CatalogTable(name, kind, tuple(columns)) for name, (kind, columns) in tables.items()]


def catalog_names(catalog: list[CatalogTable]) -> list[str]:
    """Table names, then column names, each once, for completion."""
    names = [table.name for table in catalog]
    names += [column for table in catalog for column, _ in table.columns]
    return list(dict.fromkeys(names))


def completion(line_before_cursor: str, names: Sequence[str]) -> str:
    """What completes the word before the cursor: a catalog name first, else a keyword; '' for none."""
    match = WORD_BEFORE.search(line_before_cursor)
    if match is None or len(match.group(0)) < 2:
        return ""
    prefix = match.group(0)
    for name in names:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    for keyword in KEYWORDS:
        if keyword.lower().startswith(prefix.lower()) and len(keyword) > len(prefix):
            rest = keyword[len(prefix) :]
            return rest.lower() if prefix.islower() else rest
    return ""


class QueryHistory:
    """The queries run, oldest first, in a JSON-lines file of the data dir, capped; never secrets."""

    def __init__(self, path: Path, cap: int = HISTORY_CAP) -> None:
        self.path, self.cap = path, cap
        self.entries: list[str] = self._read()

    def _read(self) -> list[str]:
        try:
            lines = self.path.read_text("utf-8").splitlines()
        except OSError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("sql"), str):
                entries.append(entry["sql"])
        return entries[-self.cap :]

    def add(self, sql: str) -> bool:
        """Keep `sql` (not twice in a row, never one that holds a key or token); True if kept."""
        if (self.entries and self.entries[-1] == sql) or any(f.kind == "secret" for f in pii.scan(sql)):
            return False
        self.entries = [*self.entries, sql][-self.cap :]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"sql": entry}) + "\n" for entry in self.entries)
        self.path.write_text(text, "utf-8")
        return True
