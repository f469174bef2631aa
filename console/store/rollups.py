"""Rollups of the traces, kept by the recorder as rows land, read by the panes' named queries.

Three tables (migration 013):

- `rollup_hourly`: per UTC hour of ts_start and per environment, key, workflow, route,
  provider, requested model, status and error type: calls, spend, tokens, and the calls
  that have a latency and a time to first token;
- `rollup_latency_hourly`: per hour, route, provider and requested model, histograms of
  latency_ms and ttft_ms over the calls sent to a model (status ok, partial or error), in
  fixed buckets of two significant digits (the `latency_bucket` macro): a bucket's count,
  least and greatest value merge by sum, min and max;
- `rollup_tasks`: per task, its calls, judge calls, cost, judge cost, first call, first
  workflow, and its outcome (a later outcome replaces the earlier one, as in `outcomes`).

Counts, tokens and spend are sums, and a bucket's least and greatest value a min and a max,
so an hourly table's rows are partial sums: a flush appends its own (a plain INSERT costs
about half a MERGE), the queries add them up (they sum rollup rows with single traces
anyway), and `compact`, which the recorder runs when it is idle (or every so many flushes
under load), merges the rows of the recent hours into one per key, to keep the tables
small; it changes no answer. A task's row is merged into the stored one (ON CONFLICT),
since the queries read one row per task. `insert` runs a writer's INSERT and
the rollup update in one transaction, from the rows the INSERT really stored (RETURNING),
so a replayed segment adds nothing twice. A retention purge deletes whole hours before its
cutoff and recomputes the cutoff's own hour and the tasks that lost calls (`after_purge`);
a bulk import, or a store filled by other means, calls `rebuild`.

Queries read whole hours from the rollups and the partial hours at either end of their
window from `traces` itself, so their answers equal the naive queries' (queries/naive/).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

KEPT = ("traces", "outcomes")
# Held from BEGIN to COMMIT by a transaction that deletes rollup rows (an import's rebuild, a
# purge's recompute). The writer's compaction deletes them too: it skips its turn while the
# lock is held, rather than make that transaction fail on a write conflict at its commit.
REWRITE_LOCK = threading.RLock()
JUDGE = "'fleetdeck-judge'"
SERVED_STATUSES = ("ok", "partial", "error")
SERVED = "(" + ", ".join(f"'{s}'" for s in SERVED_STATUSES) + ")"
# The columns of a stored row the rollups read.
COLUMNS = {
    "traces": (
        "request_id, ts_start, environment, key_id, workflow_id, task_id, route, provider, request_model, "
        "status, error_type, cost_usd, input_tokens, output_tokens, cache_read_tokens, reasoning_tokens, "
        "latency_ms, ttft_ms"
    ),
    "outcomes": "task_id, workflow_id, status",
}
READ = {table: tuple(name.strip() for name in columns.split(",")) for table, columns in COLUMNS.items()}
HOURLY_DIMS = (
    "hour",
    "environment",
    "key_id",
    "workflow_id",
    "route",
    "provider",
    "request_model",
    "status",
    "error_type",
)
HOURLY_SUMS = (
    "calls",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "latency_calls",
    "streamed_calls",
)
LATENCY_DIMS = ("hour", "route", "provider", "request_model", "metric", "bucket")
TASK_SUMS = ("calls", "judge_calls", "cost_usd", "judge_cost_usd")
FIRST_WORKFLOW = ("first_workflow_at", "first_workflow_request", "first_workflow_id")
EMPTY_TASK = (
    "first_call_at = NULL, calls = 0, judge_calls = 0, cost_usd = 0, judge_cost_usd = 0, "
    "first_workflow_at = NULL, first_workflow_request = NULL, first_workflow_id = NULL"
)


def hourly_rows(source: str) -> str:
    return f"""
        SELECT
            date_trunc('hour', ts_start) AS hour,
            environment, key_id, workflow_id, route, provider, request_model, status, error_type,
            count(*) AS calls,
            coalesce(sum(cost_usd), 0) AS cost_usd,
            coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
            coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
            coalesce(sum(cache_read_tokens), 0)::BIGINT AS cache_read_tokens,
            coalesce(sum(reasoning_tokens), 0)::BIGINT AS reasoning_tokens,
            count(latency_ms) AS latency_calls,
            count(ttft_ms) AS streamed_calls
        FROM {source}
        GROUP BY ALL"""


def latency_rows(source: str) -> str:
    return f"""
        SELECT hour, route, provider, request_model, metric, latency_bucket(value) AS bucket,
               count(*) AS calls, min(value) AS lowest, max(value) AS highest
        FROM (
            SELECT date_trunc('hour', ts_start) AS hour, route, provider, request_model,
                   'latency_ms' AS metric, latency_ms AS value
            FROM {source} WHERE status IN {SERVED} AND latency_ms IS NOT NULL
            UNION ALL
            SELECT date_trunc('hour', ts_start), route, provider, request_model, 'ttft_ms', ttft_ms
            FROM {source} WHERE status IN {SERVED} AND ttft_ms IS NOT NULL
        )
        GROUP BY ALL"""


def task_rows(source: str) -> str:
    named = f"workflow_id IS NOT NULL AND workflow_id <> {JUDGE}"
    return f"""
        SELECT
            task_id,
            min(ts_start) AS first_call_at,
            count(*) AS calls,
            count(*) FILTER (WHERE workflow_id = {JUDGE}) AS judge_calls,
            coalesce(sum(cost_usd), 0) AS cost_usd,
            coalesce(sum(cost_usd) FILTER (WHERE workflow_id = {JUDGE}), 0) AS judge_cost_usd,
            min(ts_start) FILTER (WHERE {named}) AS first_workflow_at,
            arg_min(request_id, (ts_start, request_id)) FILTER (WHERE {named}) AS first_workflow_request,
            arg_min(workflow_id, (ts_start, request_id)) FILTER (WHERE {named}) AS first_workflow_id
        FROM {source}
        WHERE task_id IS NOT NULL
        GROUP BY task_id"""


def _append(target: str, rows: str) -> str:
    return f"INSERT INTO {target} BY NAME {rows}"


def _compacted_hourly(since: str) -> str:
    sums = ", ".join(f"sum({s})::{'DOUBLE' if s == 'cost_usd' else 'BIGINT'} AS {s}" for s in HOURLY_SUMS)
    return f"SELECT {', '.join(HOURLY_DIMS)}, {sums} FROM rollup_hourly WHERE hour >= {since} GROUP BY ALL"


def _compacted_latency(since: str) -> str:
    return (
        f"SELECT {', '.join(LATENCY_DIMS)}, sum(calls)::BIGINT AS calls, min(lowest) AS lowest, "
        f"max(highest) AS highest FROM rollup_latency_hourly WHERE hour >= {since} GROUP BY ALL"
    )


def _upsert_tasks(source: str) -> str:
    t, d = "rollup_tasks", "excluded"
    earlier = (
        f"{d}.first_workflow_at IS NOT NULL AND ({t}.first_workflow_at IS NULL "
        f"OR {d}.first_workflow_at < {t}.first_workflow_at "
        f"OR ({d}.first_workflow_at = {t}.first_workflow_at "
        f"AND {d}.first_workflow_request < {t}.first_workflow_request))"
    )
    updates = [
        f"first_call_at = least({t}.first_call_at, {d}.first_call_at)",
        *(f"{s} = {t}.{s} + {d}.{s}" for s in TASK_SUMS),
        *(f"{c} = CASE WHEN {earlier} THEN {d}.{c} ELSE {t}.{c} END" for c in FIRST_WORKFLOW),
    ]
    return (
        f"INSERT INTO rollup_tasks BY NAME {task_rows(source)} "
        f"ON CONFLICT (task_id) DO UPDATE SET {', '.join(updates)}"
    )


def _upsert_outcomes(source: str) -> str:
    return (
        "INSERT INTO rollup_tasks BY NAME "
        "SELECT task_id, 0 AS calls, 0 AS judge_calls, 0 AS cost_usd, 0 AS judge_cost_usd, "
        f"status AS outcome_status, workflow_id AS outcome_workflow_id FROM {source} "
        "ON CONFLICT (task_id) DO UPDATE SET outcome_status = excluded.outcome_status, "
        "outcome_workflow_id = excluded.outcome_workflow_id"
    )


def statements(table: str, source: str, rows: pa.Table | None = None) -> list[str]:
    """The statements that add the rows of `source` (just stored in `table`) to the rollups;
    given the `rows` themselves, only those with something to add (a statement costs
    milliseconds even when it changes nothing)."""
    if table == "traces":
        found = [_append("rollup_hourly", hourly_rows(source))]
        if rows is None or _any_timed(rows):
            found.append(_append("rollup_latency_hourly", latency_rows(source)))
        if rows is None or rows.column("task_id").null_count < rows.num_rows:
            found.append(_upsert_tasks(source))
        return found
    if table == "outcomes":
        return [_upsert_outcomes(source)]
    return []


def _any_timed(rows: pa.Table) -> bool:
    """Whether a row lands in the latency histograms (latency_rows' WHERE)."""
    served = pc.is_in(rows.column("status"), value_set=pa.array(SERVED_STATUSES))
    timed = pc.or_(pc.is_valid(rows.column("latency_ms")), pc.is_valid(rows.column("ttft_ms")))
    return bool(pc.any(pc.and_(served, timed)).as_py())


# -- the writer's side ---------------------------------------------------------------------


@contextlib.contextmanager
def transaction(cur: duckdb.DuckDBPyConnection, opened: bool | None = None) -> Iterator[None]:
    """A transaction of its own, or the caller's when one is open already (`opened`: whether
    one is, when the caller knows)."""
    if opened or (opened is None and in_transaction(cur)):
        yield  # the caller's transaction makes the insert and the rollups one
        return
    cur.execute("BEGIN")
    try:
        yield
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")


def in_transaction(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether `cur` is inside an explicit transaction: then two statements share its id.

    (A BEGIN that fails would abort the caller's transaction, so it cannot be the probe.)
    """
    first, second = (cur.execute("SELECT txid_current()").fetchall() for _ in range(2))
    return first == second


def insert(
    cur: duckdb.DuckDBPyConnection,
    table: str,
    insert_sql: str,
    *,
    stores_all: pa.Table | None = None,
    opened: bool | None = None,
) -> None:
    """Run `insert_sql` (an INSERT into `table`) and add the rows it stored to the rollups.

    `stores_all`: the rows of a plain INSERT, which stores every one of them or fails, so the
    rollups read them as they are instead of the INSERT's RETURNING. `opened`: whether the
    caller has a transaction open on `cur` (True: the insert joins it; False: it opens its own),
    when the caller knows; None looks.
    """
    if table not in KEPT:
        cur.execute(insert_sql)
        return
    with transaction(cur, opened):
        if stores_all is not None:
            cur.execute(insert_sql)
            apply(cur, table, stores_all)
        else:
            stored = cur.sql(f"{insert_sql} RETURNING {COLUMNS[table]}").to_arrow_table()  # runs once, here
            apply(cur, table, stored)


def apply(cur: duckdb.DuckDBPyConnection, table: str, stored: pa.Table) -> None:
    """Add rows just stored in `table` (only those: replayed ones would count twice)."""
    if table not in KEPT or stored.num_rows == 0:
        return
    stored = stored.select(READ[table])  # the columns read, no more: each statement binds them all
    cur.register("rollup_stored", stored)
    try:
        for sql in statements(table, "rollup_stored", stored):
            cur.execute(sql)
    finally:
        cur.unregister("rollup_stored")


def compact(cur: duckdb.DuckDBPyConnection, since: datetime) -> bool:
    """Merge the hourly rollups' rows of the hours from `since`'s on into one row per key: each
    flush appends its own partial sums (cheaper than merging them in), which the queries add
    up either way, so this changes no answer; it keeps the tables small. Its own transaction.
    False (nothing done) while another transaction rewrites the rollups (`REWRITE_LOCK`)."""
    if not REWRITE_LOCK.acquire(blocking=False):
        return False
    try:
        _compact(cur, since)
    finally:
        REWRITE_LOCK.release()
    return True


def _compact(cur: duckdb.DuckDBPyConnection, since: datetime) -> None:
    params = {"since": since}
    hour = "date_trunc('hour', $since::TIMESTAMP)"
    with transaction(cur, opened=False):
        for rollup, compacted in (
            ("rollup_hourly", _compacted_hourly),
            ("rollup_latency_hourly", _compacted_latency),
        ):
            cur.execute(f"CREATE OR REPLACE TEMP TABLE rollup_compacted AS {compacted(hour)}", params)
            cur.execute(f"DELETE FROM {rollup} WHERE hour >= {hour}", params)
            cur.execute(f"INSERT INTO {rollup} BY NAME SELECT * FROM rollup_compacted")
        cur.execute("DROP TABLE rollup_compacted")


# -- rebuilds and purges -------------------------------------------------------------------


def rebuild(cur: duckdb.DuckDBPyConnection) -> None:
    """Every rollup again from `traces` and `outcomes` (after a bulk import, or a backfill)."""
    with transaction(cur):
        for rollup in ("rollup_hourly", "rollup_latency_hourly", "rollup_tasks"):
            cur.execute(f"DELETE FROM {rollup}")
        cur.execute(f"INSERT INTO rollup_hourly BY NAME {hourly_rows('traces')}")
        cur.execute(f"INSERT INTO rollup_latency_hourly BY NAME {latency_rows('traces')}")
        cur.execute(f"INSERT INTO rollup_tasks BY NAME {task_rows('traces')}")
        cur.execute(_upsert_outcomes("outcomes"))


def after_purge(cur: duckdb.DuckDBPyConnection, traces_before: datetime) -> None:
    """Bring the rollups in line after traces before `traces_before`, and outcomes, were deleted.

    Runs inside the purge's transaction. Hours before the cutoff's hour are gone whole; the
    cutoff's hour is recomputed from the traces it kept; tasks that had a call before the
    cutoff are recomputed from their kept calls; tasks whose outcome was deleted lose it.
    """
    params = {"cutoff": traces_before}
    hour = "date_trunc('hour', $cutoff::TIMESTAMP)"
    kept = f"(SELECT * FROM traces WHERE ts_start >= {hour} AND ts_start < {hour} + INTERVAL 1 HOUR)"
    for rollup, rows in (("rollup_hourly", hourly_rows), ("rollup_latency_hourly", latency_rows)):
        cur.execute(f"DELETE FROM {rollup} WHERE hour <= {hour}", params)
        cur.execute(f"INSERT INTO {rollup} BY NAME {rows(kept)}", params)
    cur.execute("CREATE OR REPLACE TEMP TABLE rollup_purged_tasks (task_id VARCHAR PRIMARY KEY)")
    try:
        cur.execute(
            "INSERT INTO rollup_purged_tasks SELECT task_id FROM rollup_tasks WHERE first_call_at < $cutoff",
            params,
        )
        cur.execute(
            f"UPDATE rollup_tasks SET {EMPTY_TASK} WHERE task_id IN (SELECT task_id FROM rollup_purged_tasks)"
        )
        cur.execute(
            _upsert_tasks("(SELECT * FROM traces WHERE task_id IN (SELECT task_id FROM rollup_purged_tasks))")
        )
    finally:
        cur.execute("DROP TABLE IF EXISTS rollup_purged_tasks")
    cur.execute(
        "UPDATE rollup_tasks SET outcome_status = NULL, outcome_workflow_id = NULL "
        "WHERE outcome_status IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM outcomes WHERE outcomes.task_id = rollup_tasks.task_id)"
    )
    cur.execute("DELETE FROM rollup_tasks WHERE calls = 0 AND outcome_status IS NULL")
