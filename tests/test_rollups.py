"""The rollup-backed pane queries answer what the naive queries (queries/naive/) answer.

Counts, tokens and spend are equal (spend up to float summation order); latency
percentiles are read from histogram buckets of two significant digits, so they are equal
within a bucket's width: at most 10 % of the value.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from console.engine import Engine
from console.settings import Settings
from console.store import queries, rollups
from console.store.db import Database
from console.store.importer import ImportProgress, import_files
from console.store.retention import Retention, Windows
from console.store.seed import sample_traces_dir
from console.store.trace import Outcome, Trace

PANES = ("cost_per_outcome", "spend_by_route_daily", "latency_slo", "error_rate")
NAIVE = queries.queries_dir() / "naive"
PERCENTILES = {f"{metric}_p{q}_ms" for metric in ("latency", "ttft") for q in (50, 95, 99)}
BUCKET_ERROR = 0.10  # a bucket is at most 10 % of its lower bound wide
START = datetime(2026, 6, 1, 9, 0)
ROUTES = ("docs", "support", "refunds", None)
STATUSES = ("ok", "ok", "ok", "ok", "partial", "error", "blocked", "over_budget", "cached")
WORKFLOWS = ("invoice_parsing", "support_triage", None)


def naive(cur: duckdb.DuckDBPyConnection, name: str, params: dict[str, object]) -> list[dict[str, Any]]:
    query = queries.parse(name, (NAIVE / f"{name}.sql").read_text("utf-8"))
    result: list[dict[str, Any]] = queries.run(cur, query, params).to_pylist()
    return result


def assert_same(cur: duckdb.DuckDBPyConnection, name: str, params: dict[str, object]) -> int:
    """The named query's rows equal the naive query's; returns how many rows there were."""
    expected = naive(cur, name, params)
    got: list[dict[str, Any]] = queries.run(cur, name, params).to_pylist()
    assert len(got) == len(expected), (name, params)
    for want, have in zip(expected, got, strict=True):
        assert list(have) == list(want), name
        for column, value in want.items():
            assert_close(column, value, have[column], (name, params))
    return len(expected)


def assert_close(column: str, want: object, have: object, where: object) -> None:
    if want is None or have is None or not isinstance(want, float):
        assert have == want, (column, where)
    elif column in PERCENTILES:
        assert abs(have - want) <= BUCKET_ERROR * abs(want), (column, want, have, where)  # type: ignore[operator]
    else:
        assert have == pytest.approx(want, rel=1e-9, abs=1e-12), (column, where)


def windows(first: datetime, last: datetime) -> list[dict[str, object]]:
    """Whole span, hour-aligned, misaligned at both ends, inside one hour, empty, inverted."""
    span = last - first
    return [
        {"from": first, "to": last + timedelta(seconds=1)},
        {"from": first.replace(minute=0, second=0, microsecond=0), "to": last.replace(minute=0, second=0)},
        {"from": first + span / 3 + timedelta(minutes=17, seconds=3), "to": last - span / 4},
        {"from": first + span / 2, "to": first + span / 2 + timedelta(minutes=25)},
        {"from": last + timedelta(days=1), "to": last + timedelta(days=2)},
        {"from": last, "to": first},
    ]


def assert_panes_match(cur: duckdb.DuckDBPyConnection, first: datetime, last: datetime) -> int:
    seen = 0
    for window in windows(first, last):
        for name in PANES:
            seen += assert_same(cur, name, window)
        for slo_ms in ("2000", "250", "1234.5", "0"):
            seen += assert_same(cur, "latency_slo", {**window, "slo_ms": slo_ms})
        seen += assert_same(cur, "error_rate", {**window, "route": "support"})
        seen += assert_same(cur, "spend_by_route_daily", {**window, "route": "docs"})
        seen += assert_same(cur, "cost_per_outcome", {**window, "workflow": "invoice_parsing"})
    return seen


def span(cur: duckdb.DuckDBPyConnection) -> tuple[datetime, datetime]:
    first, last = cur.execute("SELECT min(ts_start), max(ts_start) FROM traces").fetchall()[0]
    return first, last


# -- the sample traces ---------------------------------------------------------------------


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "sample.duckdb")
    import_files(database.cursor(), [sample_traces_dir()])
    yield database
    database.close()


def test_the_panes_equal_the_naive_queries_on_the_sample_traces(sample: Database) -> None:
    cur = sample.cursor()
    assert (
        cur.execute("SELECT sum(calls) FROM rollup_hourly").fetchall()
        == cur.execute("SELECT count(*) FROM traces").fetchall()
    )
    assert assert_panes_match(cur, *span(cur)) > 100


def test_importing_the_sample_twice_counts_it_once(sample: Database) -> None:
    cur = sample.cursor()
    import_files(cur, [sample_traces_dir()])
    first, last = span(cur)
    assert assert_same(cur, "spend_by_route_daily", {"from": first, "to": last + timedelta(seconds=1)})
    assert assert_same(cur, "cost_per_outcome", {"from": first, "to": last + timedelta(seconds=1)})


# -- generated traffic through the recorder ----------------------------------------------


def generated_traces(rng: random.Random, count: int) -> list[Trace]:
    traces = []
    for n in range(count):
        task = f"task-{rng.randrange(count // 4)}" if rng.random() < 0.9 else None
        judge = task is not None and rng.random() < 0.1
        latency = rng.choice([None, 0.0, 2000.0, 1234.5, round(rng.lognormvariate(6.5, 1.0), 3)])
        traces.append(
            Trace(
                ts_start=START + timedelta(seconds=rng.uniform(0, 3 * 86400)),
                environment=rng.choice(("prod", "staging")),
                key_id=f"key-{rng.randrange(3)}",
                workflow_id="fleetdeck-judge" if judge else rng.choice(WORKFLOWS),
                task_id=task,
                route=rng.choice(ROUTES),
                provider=rng.choice(("openai", "local", None)),
                request_model=rng.choice(("openai/gpt-4o-mini", "local/smollm2-135m")),
                status=rng.choice(STATUSES),
                error_type=rng.choice((None, "timeout", "rate_limited")),
                cost_usd=rng.choice((None, 0.0, rng.uniform(0, 0.05))),
                input_tokens=rng.choice((None, rng.randrange(5000))),
                output_tokens=rng.randrange(800),
                reasoning_tokens=rng.choice((None, 7)),
                latency_ms=latency,
                ttft_ms=rng.choice((None, round(rng.uniform(5, 900), 1))),
                request_id=f"r{n:06d}",
            )
        )
    return traces


def record_all(engine: Engine, traces: list[Trace], outcomes: list[Outcome]) -> None:
    for trace in traces:
        engine.recorder.record(trace)
    for outcome in outcomes:
        engine.recorder.record_outcome(outcome)
    assert engine.recorder.flush()


def outcome(task: str, status: str, workflow: str | None = None, day: int = 1) -> Outcome:
    return Outcome(task_id=task, status=status, workflow_id=workflow, ts=START + timedelta(days=day))


def test_generated_traffic_with_late_outcomes_replays_and_purges(tmp_path: Path) -> None:
    rng = random.Random(25)
    traces = generated_traces(rng, 3000)
    tasks = sorted({t.task_id for t in traces if t.task_id})
    settings = Settings(data_dir=tmp_path / "data")
    with Engine(settings) as engine:
        engine.start_recorder()
        cur = engine.db.cursor()
        early = [outcome("task-never-called", "resolved"), outcome(tasks[0], "failed", "refund_agent")]
        record_all(engine, traces[:1000], early)  # an outcome before its task's first call
        first_outcomes = [outcome(t, rng.choice(("resolved", "failed"))) for t in tasks[::3]]
        record_all(engine, traces[1000:2000], first_outcomes)
        late = [outcome(t, "resolved", rng.choice(WORKFLOWS), day=2) for t in tasks[::5]]  # replace earlier
        record_all(engine, traces[2000:], late)
        record_all(engine, traces[:50], [])  # recorded again: stored once, counted once
        assert cur.execute("SELECT count(*) FROM traces").fetchall() == [(3000,)]
        assert cur.execute("SELECT sum(calls) FROM rollup_hourly").fetchall() == [(3000,)]
        assert assert_panes_match(cur, *span(cur)) > 100

        clock = START + timedelta(days=31, hours=13, minutes=7, seconds=11)  # cuts an hour in two
        run = Retention(engine.db, engine.recorder, Windows(1, 30, 365), clock=lambda: clock).apply()
        assert 0 < run.rows["traces"] < 3000 and run.rows["outcomes"] > 0
        assert (
            cur.execute("SELECT sum(calls) FROM rollup_hourly").fetchall()
            == cur.execute("SELECT count(*) FROM traces").fetchall()
        )
        assert assert_panes_match(cur, START, START + timedelta(days=3)) > 100


def test_a_replayed_segment_adds_nothing_twice(settings: Settings) -> None:
    traces = generated_traces(random.Random(3), 200)
    with Engine(settings) as engine:
        engine.start_recorder()
        record_all(engine, traces, [])
    segment = settings.spool_dir / "000000999999.jsonl"  # a crash after COMMIT, before the unlink
    segment.write_bytes(b"".join(_spool_line(t) for t in traces[:120]))
    with Engine(settings) as engine:
        engine.start_recorder()
        cur = engine.db.cursor()
        assert cur.execute("SELECT sum(calls) FROM rollup_hourly").fetchall() == [(200,)]
        assert assert_same(cur, "spend_by_route_daily", {"from": START, "to": START + timedelta(days=4)})
        assert assert_same(cur, "cost_per_outcome", {"from": START, "to": START + timedelta(days=4)})


def _spool_line(trace: Trace) -> bytes:
    import orjson

    return orjson.dumps({"t": "traces", "r": trace}) + b"\n"


# -- histograms, backfill ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "bound"),
    [(0.0, 0.0), (-3.0, 0.0), (0.5, 0.5), (0.55, 0.55), (1.0, 1.0), (9.95, 10.0), (10.0, 10.0), (10.5, 11.0),
     (99.2, 100.0), (100.0, 100.0), (1999.9, 2000.0), (2000.0, 2000.0), (2000.001, 2100.0), (1234.5, 1300.0)],
)  # fmt: skip
def test_a_latency_lands_in_the_bucket_of_two_significant_digits_above_it(value: float, bound: float) -> None:
    cur = duckdb.connect()
    try:
        cur.execute(_macro())
        (found,) = cur.execute("SELECT latency_bucket(?)", [value]).fetchall()[0]
    finally:
        cur.close()
    assert math.isclose(found, bound, rel_tol=1e-12, abs_tol=0)
    assert found >= value


def _macro() -> str:
    text = (Path(rollups.__file__).parent / "migrations" / "013_rollups.sql").read_text("utf-8")
    start = text.index("CREATE MACRO latency_bucket")
    return text[start : text.index(";", start)]


def test_a_store_made_before_the_rollups_is_backfilled_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    database = Database(path)
    cur = database.cursor()
    cur.execute(
        "INSERT INTO traces (request_id, ts_start, status, route, task_id, workflow_id, cost_usd, "
        "latency_ms) SELECT 'r' || i, TIMESTAMP '2026-06-01' + i * INTERVAL 7 MINUTE, "
        "['ok', 'error', 'blocked'][i % 3 + 1], 'route-' || (i % 2), 'task-' || (i // 4), 'wf', "
        "i / 100, i * 3.5 "
        "FROM range(500) t(i)"
    )
    cur.execute(
        "INSERT INTO outcomes VALUES ('task-1', NULL, 'resolved', NULL, TIMESTAMP '2026-06-02', 'app')"
    )
    for table in ("rollup_hourly", "rollup_latency_hourly", "rollup_tasks"):
        cur.execute(f"DROP TABLE {table}")
    cur.execute("DROP MACRO latency_bucket")
    cur.execute("DELETE FROM schema_migrations WHERE version = 13")
    database.close()
    database = Database(path)
    try:
        assert assert_panes_match(database.cursor(), *span(database.cursor())) > 50
    finally:
        database.close()


def test_flushes_append_partial_sums_and_compacting_them_changes_no_answer(tmp_path: Path) -> None:
    first = generated_traces(random.Random(7), 600)
    again = [dataclasses.replace(t, request_id=f"{t.request_id}-again") for t in first]  # the same keys
    settings = Settings(data_dir=tmp_path / "data", recorder_flush_interval_s=3600)  # never idle here
    keys = f"SELECT count(*) FROM (SELECT DISTINCT {', '.join(rollups.HOURLY_DIMS)} FROM rollup_hourly)"
    with Engine(settings) as engine:
        engine.start_recorder()
        cur = engine.db.cursor()
        record_all(engine, first, [])
        record_all(engine, again, [])
        (rows,), (distinct,) = (
            cur.execute("SELECT count(*) FROM rollup_hourly").fetchall(),
            cur.execute(keys).fetchall(),
        )
        assert rows > distinct, "each flush appended its own partial sums"
        assert assert_panes_match(cur, *span(cur)) > 100
        rollups.compact(cur, START)
        assert cur.execute("SELECT count(*) FROM rollup_hourly").fetchall() == cur.execute(keys).fetchall()
        assert cur.execute("SELECT sum(calls) FROM rollup_hourly").fetchall() == [(1200,)]
        assert assert_panes_match(cur, *span(cur)) > 100


def test_a_compaction_during_an_import_waits_for_it_and_the_import_commits(tmp_path: Path) -> None:
    """The writer compacts on its idle turns, while the console's first-run import may be
    rebuilding the rollups in its transaction: both delete the same rows, and the import's
    commit failed on the conflict ("Conflict on tuple deletion"; the first run imported
    nothing). A compaction now skips its turn while an import holds the rollups."""
    settings = Settings(data_dir=tmp_path / "data", recorder_flush_interval_s=3600)
    with Engine(settings) as engine:
        engine.start_recorder()
        record_all(engine, generated_traces(random.Random(3), 200), [])
        compacted: list[bool] = []

        def compact_meanwhile(step: ImportProgress) -> None:
            if step.step == "inserted" and not compacted:  # inside the import's transaction
                writer = threading.Thread(
                    target=lambda: compacted.append(rollups.compact(engine.db.cursor(), START))
                )
                writer.start()
                writer.join()

        import_files(engine.db.cursor(), [sample_traces_dir()], progress=compact_meanwhile)
        assert compacted == [False], "the compaction waited for a later turn"
        cur = engine.db.cursor()
        assert cur.execute("SELECT count(*) FROM traces").fetchall()[0][0] > 60_000
        assert rollups.compact(cur, START)
        assert assert_panes_match(cur, *span(cur)) > 100
