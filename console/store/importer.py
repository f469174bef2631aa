"""Import traces, payloads, outcomes, evals and audit rows from Parquet or JSONL files.

Every file is checked whole before anything is written: its table (from the file
name, else from its columns), unknown or missing columns, values that do not cast to
the column's type, values outside a column's vocabulary, and keys repeated inside
the file. The first problem found is reported with its file, row and column, and
the database is left untouched. A clean set is inserted in one transaction; rows
whose key is already stored are skipped, so importing a file twice changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from console.clock import utc_now
from console.store import audit, rollups
from console.store.db import first_row
from console.store.trace import OPERATIONS

KEYS = {
    "traces": ("request_id",),
    "payloads": ("payload_ref",),
    "outcomes": ("task_id",),
    "evals": ("eval_id",),
    "audit_log": ("seq",),
}
VOCABULARY = {
    ("traces", "status"): ("ok", "partial", "error", "blocked", "over_budget", "cached"),
    ("traces", "cache"): ("miss", "exact", "semantic"),
    ("traces", "operation"): OPERATIONS,
    ("outcomes", "status"): ("resolved", "failed", "abandoned"),
    ("evals", "verdict"): ("correct", "partial", "incorrect"),
    ("audit_log", "actor_kind"): ("human", "key", "system"),
}
SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
ROW = "_fleetdeck_row"


class ImportRefused(Exception):
    """A file that cannot be imported; names the file and, when known, row and column."""

    def __init__(self, path: Path, problem: str, row: int | None = None, column: str | None = None):
        self.path, self.problem, self.row, self.column = path, problem, row, column
        where = "".join([f", row {row}" if row is not None else "", f", column {column!r}" if column else ""])
        super().__init__(f"{path}{where}: {problem}")


@dataclass(frozen=True)
class FileImport:
    path: Path
    table: str
    rows: int
    inserted: int = 0


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files to import: the paths given, with folders replaced by their data files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES))
        else:
            files.append(path)
    return files


@dataclass(frozen=True)
class ImportProgress:
    """A step of an import done: `done` of `total` (each file checked, each inserted, the commit)."""

    done: int
    total: int
    step: str  # "checked", "inserted" or "committed"
    path: Path | None = None


Progress = Callable[[ImportProgress], None]


def import_files(
    cur: duckdb.DuckDBPyConnection,
    paths: Sequence[Path],
    *,
    rebase_to_now: bool = False,
    rebase_to: datetime | None = None,
    progress: Progress | None = None,
) -> list[FileImport]:
    """Check every file, then insert them all in one transaction (or nothing at all).

    `rebase_to` (or now, with `rebase_to_now`) moves the set so that its latest timestamp
    is that moment. The audit log goes in last, under the audit chain's lock, which is
    held from BEGIN until COMMIT so that the recorder (serving calls meanwhile) never
    chains onto the same head; the other tables take live inserts throughout.
    """
    files = expand(paths)
    total = 2 * len(files) + 1
    tell = progress or (lambda _: None)
    staged = []
    for index, path in enumerate(files):
        staged.append(_stage(cur, path, index))
        tell(ImportProgress(index + 1, total, "checked", path))
    if rebase_to is None and rebase_to_now:
        rebase_to = utc_now()
    shift = _shift_to(cur, staged, rebase_to) if rebase_to is not None else timedelta(0)
    audit_last = sorted(staged, key=lambda stage: stage.table == "audit_log")  # a stable sort

    def inserted(number: int, path: Path) -> None:
        tell(ImportProgress(len(files) + number, total, "inserted", path))

    try:
        done = dict(
            zip((s.view for s in audit_last), _insert_all(cur, audit_last, shift, inserted), strict=True)
        )
    finally:
        for stage in staged:
            cur.unregister(stage.view)
    tell(ImportProgress(total, total, "committed"))
    return [done[stage.view] for stage in staged]


def _insert_all(
    cur: duckdb.DuckDBPyConnection,
    staged: list[_Staged],
    shift: timedelta,
    inserted: Callable[[int, Path], None],
) -> list[FileImport]:
    with audit.CHAIN_LOCK, rollups.REWRITE_LOCK:
        cur.execute("BEGIN")
        try:
            done = []
            for number, stage in enumerate(staged, start=1):
                done.append(_insert(cur, stage, shift))
                inserted(number, stage.path)
            if any(stage.table in rollups.KEPT for stage in staged):
                rollups.rebuild(cur)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    return done


@dataclass(frozen=True)
class _Staged:
    path: Path
    table: str
    view: str
    columns: list[Column]
    rows: int


def _stage(cur: duckdb.DuckDBPyConnection, path: Path, index: int) -> _Staged:
    if not path.is_file():
        raise ImportRefused(path, "no such file")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ImportRefused(path, f"unknown file type {path.suffix!r}: use .parquet, .jsonl or .ndjson")
    data = _read_parquet(path) if kind == "parquet" else _read_jsonl(path)
    table = _table_for(cur, path, data.column_names)
    columns = table_columns(cur, table)
    view = f"import_{index}"
    data = data.append_column(ROW, pa.array(range(1, data.num_rows + 1), pa.int64()))
    cur.register(view, data)
    try:
        _check(cur, path, table, view, columns, data.column_names)
    except BaseException:
        cur.unregister(view)
        raise
    present = [c for c in columns if c.name in data.column_names]
    return _Staged(path, table, view, present, data.num_rows)


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ImportRefused(path, f"not a readable Parquet file ({exc})") from exc


def _read_jsonl(path: Path) -> pa.Table:
    """One JSON object per line; every value kept as text so that casting finds bad rows."""
    records: list[dict[str, str | None]] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ImportRefused(path, f"malformed JSON ({exc})", row=number) from exc
            if not isinstance(obj, dict):
                raise ImportRefused(path, "each line must be a JSON object", row=number)
            records.append({k: _as_text(v) for k, v in obj.items()})
    names = list(dict.fromkeys(k for record in records for k in record))
    return pa.table({n: pa.array([r.get(n) for r in records], pa.string()) for n in names})


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def table_columns(cur: duckdb.DuckDBPyConnection, table: str) -> list[Column]:
    rows = cur.execute(
        "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [Column(name, type_, nullable) for name, type_, nullable in rows]


def _table_for(cur: duckdb.DuckDBPyConnection, path: Path, names: list[str]) -> str:
    stem = path.name.split(".")[0]
    for table in KEYS:
        if stem == table or stem.startswith((f"{table}-", f"{table}_")):
            return table
    fits = [
        table
        for table in KEYS
        if set(KEYS[table]) <= set(names) and set(names) <= {c.name for c in table_columns(cur, table)}
    ]
    if len(fits) != 1:
        raise ImportRefused(
            path,
            "cannot tell which table this file holds; name it after its table "
            f"({', '.join(KEYS)}), e.g. traces.parquet",
        )
    return fits[0]


def _check(
    cur: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    view: str,
    columns: list[Column],
    names: list[str],
) -> None:
    known = {c.name for c in columns}
    for name in names:
        if name != ROW and name not in known:
            raise ImportRefused(path, f"{table} has no column {name!r}", column=name)
    for column in columns:
        if not column.nullable and column.name not in names:
            raise ImportRefused(path, f"required column of {table} is missing", column=column.name)
    present = [c for c in columns if c.name in names]
    problems = [_first_bad_row(cur, view, table, c) for c in present]
    found = [p for p in problems if p is not None]
    if found:
        row, name, problem = min(found, key=lambda p: p[0])
        raise ImportRefused(path, problem, row=row, column=name)
    _check_unique_keys(cur, path, table, view)


def _first_bad_row(
    cur: duckdb.DuckDBPyConnection, view: str, table: str, column: Column
) -> tuple[int, str, str] | None:
    """The first row whose value is missing, uncastable or outside the vocabulary."""
    col = _quote(column.name)
    cast = _cast(col, column.type)
    allowed = VOCABULARY.get((table, column.name))
    checks = [f"({col} IS NOT NULL AND {cast} IS NULL)"]
    if not column.nullable:
        checks.append(f"{col} IS NULL")
    if allowed:
        checks.append(f"{cast} NOT IN ({', '.join(repr(v) for v in allowed)})")
    rows = cur.execute(
        f"SELECT {ROW}, CAST({col} AS VARCHAR), {cast} IS NULL FROM {view} "
        f"WHERE {' OR '.join(checks)} ORDER BY {ROW} LIMIT 1"
    ).fetchall()
    if not rows:
        return None
    number, value, uncastable = rows[0]
    if value is None:
        return number, column.name, "a value is required"
    shown = value if len(value) <= 60 else value[:57] + "..."
    if uncastable:
        return number, column.name, f"{shown!r} is not a valid {column.type}"
    return number, column.name, f"{shown!r} is not one of {', '.join(allowed or ())}"


def _check_unique_keys(cur: duckdb.DuckDBPyConnection, path: Path, table: str, view: str) -> None:
    key = ", ".join(_quote(k) for k in KEYS[table])
    repeated = cur.execute(
        f"SELECT {ROW}, first_row FROM (SELECT {ROW}, min({ROW}) OVER (PARTITION BY {key}) AS first_row "
        f"FROM {view}) WHERE {ROW} <> first_row ORDER BY {ROW} LIMIT 1"
    ).fetchall()
    if repeated:
        row, first = repeated[0]
        raise ImportRefused(path, f"repeats the key of row {first}", row=row, column=KEYS[table][0])


def _cast(expr: str, type_: str) -> str:
    """A cast that gives NULL instead of failing; JSON text is parsed for JSON and list columns."""
    if type_ == "JSON":
        return (
            f"CASE WHEN typeof({expr}) <> 'VARCHAR' THEN TRY_CAST({expr} AS JSON) "
            f"WHEN json_valid({expr}::VARCHAR) THEN {expr}::VARCHAR::JSON END"
        )
    if type_.endswith("[]"):
        return (
            f"CASE WHEN typeof({expr}) <> 'VARCHAR' THEN TRY_CAST({expr} AS {type_}) "
            f"WHEN json_valid({expr}::VARCHAR) THEN TRY_CAST({expr}::VARCHAR::JSON AS {type_}) END"
        )
    if type_ in ("INTEGER", "BIGINT"):  # TRY_CAST would round '1.5' to 2
        return f"CASE WHEN TRY_CAST({expr} AS DOUBLE) % 1 = 0 THEN TRY_CAST({expr} AS {type_}) END"
    return f"TRY_CAST({expr} AS {type_})"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _timestamp_columns(stage: _Staged) -> list[str]:
    return [c.name for c in stage.columns if c.type == "TIMESTAMP"]


def _shift_to(cur: duckdb.DuckDBPyConnection, staged: list[_Staged], end: datetime) -> timedelta:
    latest: datetime | None = None
    for stage in staged:
        for name in _timestamp_columns(stage):
            (found,) = first_row(cur, f"SELECT max(TRY_CAST({_quote(name)} AS TIMESTAMP)) FROM {stage.view}")
            if found is not None and (latest is None or found > latest):
                latest = found
    return end - latest if latest else timedelta(0)


def _insert(cur: duckdb.DuckDBPyConnection, stage: _Staged, shift: timedelta) -> FileImport:
    before = _count(cur, stage.table)
    selected = []
    for column in stage.columns:
        expr = _cast(_quote(column.name), column.type)
        if column.type == "TIMESTAMP" and shift and stage.table != "audit_log":
            expr = f"{expr} + INTERVAL ({shift.total_seconds() * 1e6:.0f}) MICROSECONDS"
        selected.append(f"{expr} AS {_quote(column.name)}")
    rows = f"(SELECT {', '.join(selected)} FROM {stage.view})"
    if stage.table == "audit_log":
        _chain_audit(cur, rows, shift, stage.path)
    else:  # an anti-join: DuckDB refuses INSERT OR IGNORE on tables with triggers
        stored = " AND ".join(f"stored.{_quote(k)} = staged.{_quote(k)}" for k in KEYS[stage.table])
        cur.execute(
            f"INSERT INTO {stage.table} BY NAME SELECT * FROM {rows} AS staged "
            f"WHERE NOT EXISTS (SELECT 1 FROM {stage.table} AS stored WHERE {stored})"
        )
    return FileImport(stage.path, stage.table, stage.rows, _count(cur, stage.table) - before)


def _chain_audit(cur: duckdb.DuckDBPyConnection, rows: str, shift: timedelta, path: Path) -> None:
    """Audit entries are chained again onto this log's head, in their seq order, so a log
    imported shifted to now, or after entries of its own, still verifies. An entry whose
    event id is stored already is skipped; one without an event id gets one from its
    content, so importing a file twice appends nothing."""
    entries = cur.sql(f"SELECT * FROM {rows} ORDER BY seq").to_arrow_table().to_pylist()
    for entry in entries:
        entry["event_id"] = entry.get("event_id") or _content_id(entry)
    events = [
        audit.AuditEvent(
            actor=entry["actor"],
            actor_kind=entry["actor_kind"],
            action=entry["action"],
            subject=entry.get("subject"),
            payload=orjson.loads(entry["payload"]) if entry.get("payload") is not None else {},
            ts=entry["ts"] + shift,
            event_id=entry["event_id"],
        )
        for entry in entries
    ]
    audit.append(cur, events)


def _content_id(entry: dict[str, Any]) -> str:
    content = [entry.get(k) for k in ("seq", "ts", "actor", "actor_kind", "action", "subject", "payload")]
    return "imported-" + hashlib.sha256(orjson.dumps(content, default=str)).hexdigest()[:32]


def _count(cur: duckdb.DuckDBPyConnection, table: str) -> int:
    (count,) = first_row(cur, f"SELECT count(*) FROM {table}")
    return int(count or 0)
