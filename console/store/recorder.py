"""The recorder: traces are acknowledged on the spool, then moved into DuckDB in batches.

`record()` appends one JSON line to the current spool segment with a single
`write(2)` and returns: the trace is acknowledged, and survives the process being
killed from then on. One writer thread rotates the segment every flush interval (or
sooner, once a batch is full), loads the closed segment into DuckDB through Arrow in
one transaction, and deletes it only after the commit. At start, segments left by
a crashed process are replayed first; inserts ignore request_ids already stored, so
replaying a segment twice changes nothing.

A segment is loaded column by column: its lines (one JSON array each, console/store/spool.py)
are decoded once and come apart into columns; each column becomes one Arrow array (a
timestamp column is parsed by one Arrow cast), and each table gets one Arrow table and one
INSERT. The writer's Python work is the decode and the arrays, per column rather than per
value; the insert itself is DuckDB's. A live segment holds new keys only, so its write-once
tables (traces, payloads, evals, stored responses) and their rollups go in one transaction of
plain INSERTs, the rollups reading the batch itself: DuckDB's cost per statement, not per
row, is most of a flush's, so a flush runs as few statements as it can. The hourly rollups
get each flush's partial sums appended; a turn with nothing to store (or every
COMPACT_EVERY flushes under load) compacts them (`rollups.compact`).

The garbage collector is paused while a segment is decoded (`_collector_paused`): the rows
are short-lived lists that would otherwise set off collections walking the whole heap.

A row DuckDB refuses is never dropped: it is written to `spool/rejected/` with the
reason, and the rest of its batch is stored.

After each live flush the writer tells its listeners what it stored (`on_flush`,
console/store/flushed.py): the console updates its panes from that instead of polling.

Stored Responses API responses (`stored_responses`) travel the same way, and so do audit
events; the writer, the only thread that appends to the audit log, numbers and chains them
as it stores them (console/store/audit.py).

When the spool cannot be written (the disk is full, a quota or file-size limit is reached),
`record()` raises `RecorderUnavailable` and leaves no part of the record on the spool (a
short write is cut back), so nothing is acknowledged that could be lost; `accepting` is
False until the writer's next probe (every flush interval) writes again, and the gateway
refuses calls meanwhile (docs/reliability.md). A closed segment DuckDB cannot store (its
file's disk is full) stays on the spool and is stored again, in order, on later turns.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from console.errors import Unavailable
from console.store import audit, rollups
from console.store.db import Database
from console.store.flushed import Flushed, FlushListeners, Listener
from console.store.spool import AUDIT, HEADER, LAYOUTS, Segment, Spooled, read_segment, spool_line
from console.store.trace import Eval, Outcome, Payload, StoredResponse, Trace

log = logging.getLogger("fleetdeck.recorder")

# Spooled tables, their key, and what a row whose key is stored already does: a trace
# is written once (replays skip it); a later outcome of a task replaces the earlier.
KEYS = {
    "traces": "request_id",
    "payloads": "payload_ref",
    "outcomes": "task_id",
    "evals": "eval_id",
    "stored_responses": "response_id",
}
ON_CONFLICT = {
    "traces": "IGNORE",
    "payloads": "IGNORE",
    "outcomes": "REPLACE",
    "evals": "IGNORE",
    "stored_responses": "IGNORE",
}
SEGMENT_SUFFIX = ".jsonl"
BATCH_ERRORS = (duckdb.Error, pa.ArrowException, ValueError, TypeError)
# DuckDB errors that are about the disk or the database, not about a row: the batch is not
# stored row by row (no row is to blame), its segment waits for a later turn.
STORE_ERRORS = (duckdb.IOException, duckdb.FatalException)
COMPACT_EVERY = 64  # flushes after which the hourly rollups are compacted even under load


class RecorderUnavailable(Unavailable):
    """The spool cannot be written (disk full, quota, file-size limit): nothing was acknowledged."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"Fleetdeck cannot record calls right now ({reason}); nothing was served or kept. "
            "Free space on the disk holding its data dir; calls are accepted again once it can write.",
            code="recorder_unavailable",
        )


class Recorder:
    def __init__(
        self,
        db: Database,
        spool_dir: Path,
        *,
        flush_interval_s: float = 0.1,
        batch_traces: int = 1000,
        fsync_interval_s: float = 1.0,
        checkpointer: audit.Checkpointer | None = None,
    ) -> None:
        self._db = db
        self._checkpointer = checkpointer
        self._spool_dir = spool_dir
        self._rejected_dir = spool_dir / "rejected"
        self._flush_interval_s = flush_interval_s
        self._batch_traces = batch_traces
        self._fsync_interval_s = fsync_interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stored = threading.Condition()
        self._fd: int | None = None
        self._size = 0  # bytes in the current segment, all of them whole lines
        self._unwritable: str | None = None  # why the last append failed, until a probe writes
        self._unstored: list[tuple[Path, int]] = []  # closed segments DuckDB could not store yet
        self._store_failing = False
        self._segment_seq = 0
        self._pending = 0
        self._recorded = 0
        self._stored_count = 0
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._columns: dict[str, _Columns] = {}
        self._listeners = FlushListeners()
        self._uncompacted: datetime | None = None  # the first hour with rollup rows not compacted
        self._flushes_uncompacted = 0

    def on_flush(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on the writer's thread after each committed flush (a `Flushed`);
        returns the function that unsubscribes it. The listener must not block."""
        return self._listeners.add(listener)

    # -- lifecycle -------------------------------------------------------------------

    def replay(self) -> int:
        """Store the segments a previous process left behind; returns their traces."""
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        cur = self._db.cursor()
        self._columns = {table: _Columns.of(cur, table) for table in KEYS}
        leftovers = self._segments()
        replayed = sum(self._store(self._read_closed(path, live=False)).trace_count for path in leftovers)
        if leftovers:
            log.info("replayed %d spooled traces from %d segments", replayed, len(leftovers))
            self._segment_seq = max(self._segment_seq, _segment_number(leftovers[-1]))
        return replayed

    def start(self) -> int:
        """Replay what a previous process left, then start the writer; returns the replayed."""
        replayed = self.replay()
        self._open_segment()
        self._writer = threading.Thread(target=self._run_writer, name="fleetdeck-recorder", daemon=True)
        self._writer.start()
        return replayed

    def stop(self) -> None:
        """Store everything recorded so far, then stop the writer."""
        if self._writer is None:
            return
        self.flush()
        self._stopping = True
        self._wake.set()
        self._writer.join()
        self._writer = None
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self._checkpoint(self._db.cursor(), force=True)

    def _checkpoint(self, cur: duckdb.DuckDBPyConnection, force: bool = False) -> None:
        """Sign the chain's head when a checkpoint is due (or, at stop, when it moved)."""
        checkpointer = self._checkpointer
        if checkpointer is None:
            return
        seq, head = audit.head(cur)
        if seq and checkpointer.due(cur, seq, force):
            checkpointer.publish(checkpointer.sign(cur, seq, head))

    # -- the caller's side -----------------------------------------------------------

    def record(self, trace: Trace, payload: Payload | None = None) -> None:
        """Acknowledge a trace (and its payload) once it is on the spool."""
        line = spool_line("traces", trace)
        if payload is not None:
            line += spool_line("payloads", payload)
        self._append(line)

    def record_outcome(self, outcome: Outcome) -> None:
        """Acknowledge a task's outcome once it is on the spool."""
        self._append(spool_line("outcomes", outcome))

    def record_eval(self, verdict: Eval) -> None:
        """Acknowledge a verdict once it is on the spool."""
        self._append(spool_line("evals", verdict))

    def record_response(self, stored: StoredResponse) -> None:
        """Acknowledge a stored Responses API response once it is on the spool."""
        self._append(spool_line("stored_responses", stored))

    def record_audit(self, event: audit.AuditEvent) -> None:
        """Acknowledge an audit event once it is on the spool; the writer chains it."""
        self._append(spool_line(AUDIT, event))

    @property
    def accepting(self) -> bool:
        """False while the spool cannot be written (until the writer's probe writes again)."""
        return self._unwritable is None

    def check_accepting(self) -> None:
        """Raise RecorderUnavailable while the spool cannot be written."""
        reason = self._unwritable
        if reason is not None:
            raise RecorderUnavailable(reason)

    def _append(self, line: bytes) -> None:
        with self._lock:
            if self._fd is None:
                raise RuntimeError("the recorder is not running")
            self._write_whole(self._fd, line)
            self._pending += 1
            self._recorded += 1
            full = self._pending >= self._batch_traces
        if full:
            self._wake.set()

    def _write_whole(self, fd: int, line: bytes) -> None:
        """Append the whole line or nothing (caller holds the lock): a short write is cut back,
        so a torn record never sits before the next one."""
        written = 0
        try:
            while written < len(line):
                n = os.write(fd, line[written:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
        except OSError as exc:
            if written:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size)
            reason = exc.strerror or str(exc)
            if self._unwritable is None:
                log.error("the spool cannot be written (%s): calls are refused until it can", reason)
            self._unwritable = reason
            raise RecorderUnavailable(reason) from exc
        self._size += written

    def _probe(self) -> None:
        """While unwritable, try an empty line (readers skip it); accept again once it is written."""
        with self._lock:
            if self._unwritable is None or self._fd is None:
                return
            with contextlib.suppress(RecorderUnavailable):
                self._write_whole(self._fd, b"\n")
                log.warning("the spool can be written again: calls are accepted")
                self._unwritable = None

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every trace recorded before this call is in DuckDB."""
        with self._lock:
            target = self._recorded
        self._wake.set()
        with self._stored:
            return self._stored.wait_for(lambda: self._stored_count >= target, timeout_s)

    # -- the writer ------------------------------------------------------------------

    def _run_writer(self) -> None:
        last_fsync = time.monotonic()
        while True:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            self._probe()
            with self._lock:
                pending, closed = self._pending, None
                if pending:
                    closed = self._rotate()
            if closed is not None:
                self._unstored.append((closed[0], pending))
                os.close(closed[1])
            if self._unstored:
                self._store_unstored()
                if self._flushes_uncompacted >= COMPACT_EVERY:
                    self._compact()
            else:
                self._compact()  # idle
                if self._fsync_interval_s and time.monotonic() - last_fsync >= self._fsync_interval_s:
                    with self._lock:
                        if self._fd is not None:
                            os.fsync(self._fd)
                    last_fsync = time.monotonic()
            if self._stopping and not pending:
                return  # a segment still unstored is replayed at the next start

    def _store_unstored(self) -> None:
        """Store the closed segments in order; one DuckDB cannot store waits for the next turn
        (on disk, so a stop before then leaves it to the replay at start)."""
        while self._unstored:
            path, records = self._unstored[0]
            try:
                flushed = self._store(self._read_closed(path, live=True))
            except (OSError, duckdb.Error) as exc:
                if not self._store_failing:
                    log.error("could not store spool segment %s (%s); trying again", path.name, exc)
                self._store_failing = True
                return
            self._store_failing = False
            self._unstored.pop(0)
            if len(self._listeners):
                self._listeners.notify(flushed)
            with self._stored:
                self._stored_count += records
                self._stored.notify_all()

    def _compact(self) -> None:
        """Merge the hourly rollups' rows appended since the last time (`rollups.compact`)."""
        since = self._uncompacted
        if since is None:
            return
        try:
            if not rollups.compact(self._db.cursor(), since):
                return  # an import or a purge rewrites them: a later turn
        except duckdb.Error as exc:
            log.warning("could not compact the hourly rollups (%s); trying again later", exc)
            return
        self._uncompacted, self._flushes_uncompacted = None, 0

    def _appended_rollups(self, traces: pa.Table | None) -> None:
        """Note the hours whose rollups got rows from stored traces, for `_compact`."""
        if traces is None or not traces.num_rows:
            return
        first = pc.min(traces.column("ts_start")).as_py()
        if first is not None:
            self._uncompacted = first if self._uncompacted is None else min(self._uncompacted, first)
            self._flushes_uncompacted += 1

    def _rotate(self) -> tuple[Path, int] | None:
        """Swap in a fresh segment (caller holds the lock); returns the closed one, or None when
        no fresh one can be made (the disk is full): records go on to the current one."""
        assert self._fd is not None
        closed = (self._segment_path(self._segment_seq), self._fd)
        try:
            self._open_segment()
        except OSError:
            return None
        self._pending = 0
        return closed

    def _open_segment(self) -> None:
        path = self._segment_path(self._segment_seq + 1)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if os.write(fd, HEADER) != len(HEADER):  # the names of the records' values, before any
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._segment_seq += 1
        self._fd, self._size = fd, len(HEADER)

    def _segment_path(self, seq: int) -> Path:
        return self._spool_dir / f"{seq:012d}{SEGMENT_SUFFIX}"

    def _segments(self) -> list[Path]:
        return sorted(self._spool_dir.glob(f"*{SEGMENT_SUFFIX}"), key=_segment_number)

    def _read_closed(self, path: Path, live: bool) -> _Closed:
        """Read a closed segment: its refused records to rejected/, a live one's write-once tables
        into Arrow batches (none when Arrow refuses one: those go the careful way), whose rows are
        dropped then (the careful way reads them again). The collector is paused meanwhile."""
        with _collector_paused():
            segment = read_segment(path, self._legacy_names)
            batches = self._batches(segment) if live else {}
            for table in batches:
                del segment.tables[table]
        for table, record, reason in segment.refused:
            self._reject(table, record, path.name, reason)
        return _Closed(path, segment, batches, live)

    def _batches(self, segment: Segment) -> dict[str, pa.Table]:
        """The write-once tables of a live segment as Arrow batches; none when Arrow refuses one."""
        tables = [t for t in KEYS if ON_CONFLICT[t] == "IGNORE" and segment.tables.get(t)]
        try:
            return {table: self._columns[table].arrow(segment.tables[table]) for table in tables}
        except BATCH_ERRORS:
            return {}

    def _store(self, closed: _Closed) -> Flushed:
        """Load one read segment into DuckDB, then delete it. Returns what it stored."""
        segment, name = closed.segment, closed.path.name
        cur = self._db.cursor()
        fresh = self._store_fresh(cur, closed.batches)
        if closed.batches and not fresh:  # DuckDB refused a row: the careful way needs them all
            segment = read_segment(closed.path, self._legacy_names)
        counts = {table: batch.num_rows for table, batch in fresh.items()}
        traces = fresh.get("traces")
        for table in KEYS:
            spooled = segment.tables.get(table)
            if spooled and table not in fresh:
                stored = self._insert(cur, table, spooled, name, closed.live)
                counts[table] = stored.num_rows
                if table == "traces":
                    traces = stored
        events = segment.tables.get(AUDIT)
        if events:
            counts[AUDIT] = self._append_audit(cur, events.records(), name)
        self._appended_rollups(traces)
        closed.path.unlink()
        return Flushed(counts, traces)

    def _store_fresh(
        self, cur: duckdb.DuckDBPyConnection, batches: dict[str, pa.Table]
    ) -> dict[str, pa.Table]:
        """A live segment's write-once tables (traces, payloads, …) in one transaction of plain
        INSERTs with their rollups; returns each table's rows stored. A fresh segment holds new keys
        only, so this is the usual path: one commit per flush, no conflict checks, no RETURNING.
        Whatever DuckDB refuses rolls it all back, and the tables go the careful way (`_insert`:
        a conflict rule, then row by row), which sets aside only the refused rows."""
        if not batches:
            return {}
        cur.execute("BEGIN")
        try:
            for table, batch in batches.items():
                cur.register("spool_batch", batch)
                try:
                    sql = f"INSERT INTO {table} BY NAME SELECT * FROM spool_batch"
                    rollups.insert(cur, table, sql, stores_all=batch, opened=True)
                finally:
                    cur.unregister("spool_batch")
            cur.execute("COMMIT")
        except BATCH_ERRORS as refused:
            with contextlib.suppress(duckdb.Error):  # a COMMIT that failed has rolled back already
                cur.execute("ROLLBACK")
            if isinstance(refused, STORE_ERRORS):
                raise  # the disk or the database, not a row: the segment waits
            return {}
        return batches

    @property
    def _legacy_names(self) -> dict[str, tuple[str, ...]]:
        """The fields kept of a record spooled as an object (the earlier format): its table's columns."""
        return {**{table: tuple(c.schema.names) for table, c in self._columns.items()}, AUDIT: LAYOUTS[AUDIT]}

    def _append_audit(self, cur: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], segment: str) -> int:
        """Chain the spooled events after the log's head; a malformed one is kept in rejected/.
        Returns the events appended."""
        events = []
        for row in rows:
            try:
                event = _audit_event(row)
                audit.chain(event, 0, audit.GENESIS_HASH)  # one that cannot be hashed must not block the rest
                events.append(event)
            except (TypeError, ValueError, KeyError) as exc:
                self._reject(AUDIT, row, segment, str(exc))
        appended = audit.append(cur, events)
        self._checkpoint(cur)
        return appended

    def _insert(
        self, cur: duckdb.DuckDBPyConnection, table: str, spooled: Spooled, segment: str, live: bool
    ) -> pa.Table:
        """Store one table's records of a segment: one Arrow table, one INSERT; the rows stored.

        A batch DuckDB (or Arrow) refuses is stored row by row, so only the refused rows
        are set aside.
        """
        columns = self._columns[table]
        if ON_CONFLICT[table] == "REPLACE":  # one statement may not replace a row twice: last wins
            spooled = spooled.last_per_key(KEYS[table])
        try:
            batch = columns.arrow(spooled)
            if live and ON_CONFLICT[table] == "IGNORE":
                # A fresh segment holds new keys only: a plain INSERT costs half of INSERT OR IGNORE.
                try:
                    _insert_batch(cur, table, batch, plain=True)
                    return batch
                except STORE_ERRORS:
                    raise
                except BATCH_ERRORS:
                    pass
            _insert_batch(cur, table, batch)
            return batch
        except STORE_ERRORS:
            raise  # the disk or the database, not a row: the segment waits
        except BATCH_ERRORS:
            return self._insert_rows(cur, table, spooled, segment)

    def _insert_rows(
        self, cur: duckdb.DuckDBPyConnection, table: str, spooled: Spooled, segment: str
    ) -> pa.Table:
        columns = self._columns[table]
        stored = []
        for row in spooled.rows:
            try:
                batch = columns.arrow(spooled.only([row]))
                _insert_batch(cur, table, batch)
                stored.append(batch)
            except STORE_ERRORS:
                raise
            except BATCH_ERRORS as exc:
                self._reject(table, spooled.record(row), segment, str(exc))
        return pa.concat_tables(stored) if stored else columns.schema.empty_table()

    def _reject(self, table: str, row: dict[str, Any], segment: str, reason: str) -> None:
        self._rejected_dir.mkdir(exist_ok=True)
        key = row.get(KEYS.get(table, "event_id"))
        log.error("DuckDB refused %s row %s from spool segment %s: %s", table, key, segment, reason)
        entry = {"table": table, "row": row, "segment": segment, "error": reason}
        with (self._rejected_dir / f"{table}.jsonl").open("ab") as f:
            f.write(orjson.dumps(entry, default=str) + b"\n")


@dataclass(slots=True)
class _Closed:
    """A closed segment read back: its records by table and, for a live one, the Arrow batches
    of its write-once tables (their rows dropped)."""

    path: Path
    segment: Segment
    batches: dict[str, pa.Table]
    live: bool


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a segment is decoded. Its rows are new lists
    (and the dicts of their JSON values), alive until their Arrow arrays are built: each
    collection they set off would walk them and every other object of the process, and
    those many times per segment cost more than the decode itself. They hold no cycles and
    are freed by reference counting before it resumes. (Process-wide: meanwhile no thread's
    allocations start a collection; one that is due runs once it resumes.)"""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _insert_batch(cur: duckdb.DuckDBPyConnection, table: str, batch: pa.Table, plain: bool = False) -> None:
    """INSERT OR <the table's conflict rule>, or a plain INSERT: the writer's own, on a cursor
    with no transaction open, which stores every row of the batch or fails (so the rollups
    take the batch as it is)."""
    verb = "INSERT" if plain else f"INSERT OR {ON_CONFLICT[table]}"
    cur.register("spool_batch", batch)
    try:
        sql = f"{verb} INTO {table} BY NAME SELECT * FROM spool_batch"
        rollups.insert(cur, table, sql, stores_all=batch if plain else None, opened=False if plain else None)
    finally:
        cur.unregister("spool_batch")


def _audit_event(row: dict[str, Any]) -> audit.AuditEvent:
    return audit.AuditEvent(**{**row, "ts": datetime.fromisoformat(row["ts"])})


def _segment_number(path: Path) -> int:
    return int(path.stem)


class _Columns:
    """The Arrow schema of a table, and which of its columns need converting from JSON."""

    def __init__(self, schema: pa.Schema, json_columns: set[str]) -> None:
        self.schema = schema
        self.timestamps = {f.name for f in schema if pa.types.is_timestamp(f.type)}
        self.json = json_columns

    @classmethod
    def of(cls, cur: duckdb.DuckDBPyConnection, table: str) -> _Columns:
        schema = cur.sql(f"SELECT * FROM {table} LIMIT 0").to_arrow_table().schema
        json_columns = {
            name
            for (name,) in cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = ? AND data_type = 'JSON'",
                [table],
            ).fetchall()
        }
        return cls(schema, json_columns)

    def arrow(self, spooled: Spooled) -> pa.Table:
        """The records as one Arrow table of this table's schema: one array per column."""
        values = spooled.columns()
        rows = len(spooled)
        return pa.Table.from_arrays(
            [self._array(f, values.get(f.name), rows) for f in self.schema], schema=self.schema
        )

    def _array(self, column: pa.Field, values: Sequence[Any] | None, rows: int) -> pa.Array:
        if values is None:  # a field the records do not have
            return pa.nulls(rows, column.type)
        if column.name in self.timestamps:
            return _timestamps(values, column.type)
        if column.name in self.json:
            return pa.array([None if v is None else orjson.dumps(v).decode() for v in values], column.type)
        return pa.array(values, column.type)


def _timestamps(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """ISO 8601 strings (naive UTC, as the records hold them) parsed by one Arrow cast.

    A column Arrow cannot cast (one with a UTC offset) is parsed value by value, as
    `datetime.fromisoformat` reads it; Arrow takes an aware datetime as its UTC time.
    """
    try:
        return pc.cast(pa.array(values, pa.string()), type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([datetime.fromisoformat(v) if isinstance(v, str) else v for v in values], type_)
