"""Ingest and query benchmarks of the trace store.

1. Ingest: traces per second from `record()` until queryable in DuckDB, through the
   recorder (spool + batched Arrow writer), side by side in the same run with two
   peers: Arrow batches inserted straight into DuckDB (the ceiling: no spool, no
   crash safety) and one INSERT per trace (what the recorder avoids).
2. Queries: p50/p95 latency of the panes' named queries (`cost_per_outcome`,
   `spend_by_route_daily`, `latency_slo`, `error_rate`) over stores of 1 M and 10 M
   generated traces, read from the rollups (console/store/rollups.py, rebuilt after the
   generation as after an import), side by side with the naive queries (queries/naive/).
   Each query runs `--runs` times, or fewer (at least 5) once `--query-budget-s` is spent,
   so a slow query cannot blow the bench's time budget.

Prints a table and writes bench/out/ingest.json; never asserts a time.
Run: `make bench` or `.venv/bin/python bench/ingest.py [--sizes 1000000 10000000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from console.engine import Engine
from console.settings import Settings
from console.store import queries, rollups
from console.store.db import Database
from console.store.trace import Trace

OUT = Path(__file__).with_name("out")
WORKFLOWS = ("invoice_parsing", "support_triage", "internal_doc_summaries", "refund_agent")


def sample_trace(n: int) -> Trace:
    return Trace(
        workflow_id=WORKFLOWS[n % 4],
        task_id=f"task-{n // 3}",
        route=f"route-{n % 4}",
        request_model="openai/gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        provider="openai",
        reason_code="primary",
        attempts=1,
        attempt_log=[{"provider": "openai", "model": "gpt-4o-mini", "status": "ok", "latency_ms": 412.0}],
        input_tokens=812,
        output_tokens=143,
        cost_usd=0.000208,
        latency_ms=412.0,
        ttft_ms=180.0,
        finish_reasons=["stop"],
        cache="miss",
        guard_results={"pii": "pass", "injection": 0.02},
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- ingest ------------------------------------------------------------------------------


def ingest_recorder(traces: list[Trace], threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, Engine(Settings(data_dir=Path(tmp))) as engine:
        engine.start_recorder()
        latencies: list[float] = []
        chunks = [traces[i::threads] for i in range(threads)]

        def produce(chunk: list[Trace]) -> None:
            own = []
            record = engine.recorder.record
            for trace in chunk:
                t0 = time.perf_counter_ns()
                record(trace)
                own.append((time.perf_counter_ns() - t0) / 1000)
            latencies.extend(own)

        start = time.perf_counter()
        workers = [threading.Thread(target=produce, args=(c,)) for c in chunks]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        acked = time.perf_counter() - start
        engine.recorder.flush(timeout_s=600)
        stored = time.perf_counter() - start
        rows = engine.db.cursor().execute("SELECT count(*) FROM traces").fetchall()[0][0]
    assert rows == len(traces)
    return {
        "acked_per_s": len(traces) / acked,
        "queryable_per_s": len(traces) / stored,
        "record_p50_us": percentile(latencies, 0.5),
        "record_p99_us": percentile(latencies, 0.99),
    }


def ingest_arrow_direct(traces: list[Trace], batch: int = 1000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "direct.duckdb")
        cur = db.cursor()
        schema = cur.sql("SELECT * FROM traces LIMIT 0").to_arrow_table().schema
        json_columns = ("attempt_log", "guard_results", "tool_calls")
        start = time.perf_counter()
        for i in range(0, len(traces), batch):
            rows = [_row(t, json_columns) for t in traces[i : i + batch]]
            cur.register("b", pa.Table.from_pylist(rows, schema=schema))
            cur.execute("INSERT OR IGNORE INTO traces BY NAME SELECT * FROM b")
            cur.unregister("b")
        elapsed = time.perf_counter() - start
        db.close()
    return {"queryable_per_s": len(traces) / elapsed}


def ingest_arrow_append(traces: list[Trace], batch: int = 1000) -> dict[str, float]:
    """DuckDB's own Arrow-append rate: the same rows and schema, Arrow tables built before the clock."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "append.duckdb")
        cur = db.cursor()
        schema = cur.sql("SELECT * FROM traces LIMIT 0").to_arrow_table().schema
        json_columns = ("attempt_log", "guard_results", "tool_calls")
        tables = [
            pa.Table.from_pylist([_row(t, json_columns) for t in traces[i : i + batch]], schema=schema)
            for i in range(0, len(traces), batch)
        ]
        start = time.perf_counter()
        for table in tables:
            cur.register("b", table)
            cur.execute("INSERT INTO traces BY NAME SELECT * FROM b")
            cur.unregister("b")
        elapsed = time.perf_counter() - start
        db.close()
    return {"queryable_per_s": len(traces) / elapsed}


def ingest_row_by_row(traces: list[Trace]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "rows.duckdb")
        cur = db.cursor()
        start = time.perf_counter()
        for t in traces:
            cur.execute(
                "INSERT INTO traces (request_id, ts_start, status, workflow_id, task_id, route, cost_usd, "
                "attempt_log) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    t.request_id,
                    t.ts_start,
                    t.status,
                    t.workflow_id,
                    t.task_id,
                    t.route,
                    t.cost_usd,
                    json.dumps(t.attempt_log),
                ],
            )
        elapsed = time.perf_counter() - start
        db.close()
    return {"queryable_per_s": len(traces) / elapsed}


def _row(trace: Trace, json_columns: tuple[str, ...]) -> dict[str, object]:
    row = {name: getattr(trace, name) for name in trace.__slots__}  # type: ignore[attr-defined]
    for name in json_columns:
        if row[name] is not None:
            row[name] = json.dumps(row[name])
    return row


# -- queries -----------------------------------------------------------------------------

GENERATE = """
INSERT INTO traces (request_id, ts_start, ts_end, status, environment, key_id, workflow_id, intent, tier,
                    task_id, step, operation, route, request_model, provider, reason_code, attempts,
                    input_tokens, output_tokens, cost_usd, latency_ms, cache)
SELECT printf('%026d', i), ts, ts + INTERVAL (lat) MILLISECOND,
       CASE WHEN h % 100 < 3 THEN 'error' WHEN h % 100 < 4 THEN 'over_budget' ELSE 'ok' END,
       CASE WHEN h % 10 = 0 THEN 'staging' ELSE 'prod' END, 'key-' || (h % 12), wf, wf,
       CASE WHEN h % 4 = 0 THEN 'large' ELSE 'small' END,
       'task-' || (i // 3), (i % 3)::INT, 'chat', 'route:' || wf,
       CASE WHEN h % 4 = 0 THEN 'openai/gpt-4o' ELSE 'local/smollm2-135m' END,
       CASE WHEN h % 4 = 0 THEN 'openai' ELSE 'local' END, 'primary', 1,
       tokens_in, tokens_out, (tokens_in * 2.5 + tokens_out * 10) / 1e6, lat,
       CASE WHEN h % 5 = 0 THEN 'exact' ELSE 'miss' END
FROM (
    SELECT i, hash(i) AS h,
           ['invoice_parsing', 'support_triage', 'internal_doc_summaries', 'refund_agent']
               [(i // 3) % 4 + 1] AS wf,
           (now() AT TIME ZONE 'UTC')::TIMESTAMP - INTERVAL (56 * 86400 * (1 - i / $n)) SECOND AS ts,
           (200 + hash(i + 1) % 3000)::DOUBLE AS lat,
           (100 + hash(i + 2) % 4000)::BIGINT AS tokens_in,
           (20 + hash(i + 3) % 800)::BIGINT AS tokens_out
    FROM range($first, $last) t(i)
)
"""

OUTCOMES = """
INSERT INTO outcomes
SELECT task_id, any_value(workflow_id),
       CASE WHEN hash(task_id) % 10 < 8 THEN 'resolved' WHEN hash(task_id) % 10 < 9 THEN 'failed'
            ELSE 'abandoned' END,
       NULL, max(ts_end), 'bench'
FROM traces GROUP BY task_id
"""


def build_store(path: Path, size: int) -> tuple[float, float]:
    """Generate the traces and outcomes, then their rollups (as an import does); the seconds of each."""
    db = Database(path)
    cur = db.cursor()
    start = time.perf_counter()
    step = 2_000_000
    for first in range(0, size, step):
        cur.execute(GENERATE, {"n": size, "first": first, "last": min(size, first + step)})
    cur.execute(OUTCOMES)
    generated = time.perf_counter()
    rollups.rebuild(cur)
    cur.execute("CHECKPOINT")
    db.close()
    return generated - start, time.perf_counter() - generated


PANE_QUERIES = ("cost_per_outcome", "spend_by_route_daily", "latency_slo", "error_rate")
MIN_RUNS = 5


def naive_query(name: str) -> queries.NamedQuery:
    """The query as it read before the rollups: `traces` and `outcomes` only (queries/naive/)."""
    path = queries.queries_dir() / "naive" / f"{name}.sql"
    return queries.parse(name, path.read_text("utf-8"), source=str(path))


def time_query(
    cur: duckdb.DuckDBPyConnection, query: str | queries.NamedQuery, runs: int, budget_s: float
) -> dict[str, float]:
    queries.run(cur, query, {})  # warm: the plan and the file's pages
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < runs and (len(samples) < MIN_RUNS or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        queries.run(cur, query, {})
        samples.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": statistics.median(samples), "p95_ms": percentile(samples, 0.95), "runs": len(samples)}


def bench_queries(sizes: list[int], runs: int, budget_s: float = 15.0) -> dict[int, dict[str, object]]:
    results: dict[int, dict[str, object]] = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.duckdb"
            print(f"  generating {size:,} traces …", flush=True)
            built, rolled_up = build_store(path, size)
            db = Database(path)
            cur = db.cursor()
            results[size] = {
                "build_s": built,
                "rollups_build_s": rolled_up,
                "file_mb": path.stat().st_size / 1e6,
                **{name: time_query(cur, name, runs, budget_s) for name in PANE_QUERIES},
                **{
                    f"naive_{name}": time_query(cur, naive_query(name), runs, budget_s)
                    for name in PANE_QUERIES
                },
            }
            db.close()
    return results


# -- report ------------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
    }


def run(measure: Callable[[], dict[str, float]], label: str) -> dict[str, float]:
    print(f"  {label} …", flush=True)
    return measure()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=200_000, help="traces per ingest round")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per query (at most)")
    parser.add_argument("--query-budget-s", type=float, default=15.0, help="time per query and size")
    parser.add_argument("--out", type=Path, default=OUT / "ingest.json")
    parser.add_argument("--ingest-only", action="store_true", help="skip the pane queries")
    args = parser.parse_args()

    info = machine()
    print(f"Fleetdeck store bench — {info['cpu']}, {info['cores']} cores, duckdb {info['duckdb']}")
    traces = [sample_trace(n) for n in range(args.traces)]
    ingest = {
        "recorder_1_thread": run(lambda: ingest_recorder(traces, 1), "recorder, 1 thread"),
        "recorder_4_threads": run(lambda: ingest_recorder(traces, 4), "recorder, 4 threads"),
        "arrow_direct": run(lambda: ingest_arrow_direct(traces), "Arrow batches straight into DuckDB"),
        "duckdb_arrow_append": run(lambda: ingest_arrow_append(traces), "DuckDB's Arrow append alone"),
        "row_by_row": run(lambda: ingest_row_by_row(traces[:20_000]), "one INSERT per trace"),
    }
    query_results = {} if args.ingest_only else bench_queries(args.sizes, args.runs, args.query_budget_s)

    ceiling = ingest["arrow_direct"]["queryable_per_s"]
    append = ingest["duckdb_arrow_append"]["queryable_per_s"]
    print(f"\nIngest ({args.traces:,} traces)")
    header = f"{'path':<24}{'acked/s':>12}{'queryable/s':>14}{'× direct':>10}{'× append':>10}"
    print(f"{header}{'record p50':>12}{'p99':>9}")
    for name, r in ingest.items():
        acked = f"{r['acked_per_s']:,.0f}" if "acked_per_s" in r else "-"
        p50 = f"{r['record_p50_us']:.1f} µs" if "record_p50_us" in r else "-"
        p99 = f"{r['record_p99_us']:.0f} µs" if "record_p99_us" in r else "-"
        ratio, vs_append = r["queryable_per_s"] / ceiling, r["queryable_per_s"] / append
        print(
            f"{name:<24}{acked:>12}{r['queryable_per_s']:>14,.0f}{ratio:>10.2f}{vs_append:>10.2f}{p50:>12}{p99:>9}"
        )

    print("\nNamed queries (default window: last 30 days): on the rollups, and naive (traces only)")
    header = f"{'traces':>12}{'query':>24}{'p50 ms':>10}{'p95 ms':>10}{'naive p50':>11}{'naive p95':>11}"
    print(f"{header}{'× naive p95':>13}{'× smallest':>12}")
    for size, r in query_results.items():
        smallest = query_results[min(query_results)]
        for name in PANE_QUERIES:
            q, was, base = r[name], r[f"naive_{name}"], smallest[name]
            assert isinstance(q, dict) and isinstance(was, dict) and isinstance(base, dict)
            scale = q["p50_ms"] / base["p50_ms"]
            print(
                f"{size:>12,}{name:>24}{q['p50_ms']:>10.1f}{q['p95_ms']:>10.1f}{was['p50_ms']:>11.1f}"
                f"{was['p95_ms']:>11.1f}{q['p95_ms'] / was['p95_ms']:>13.3f}{scale:>12.1f}"
            )
        print(f"{size:>12,}{'(rollups built in)':>24}{r['rollups_build_s']:>10.1f} s")

    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": info,
        "traces_per_round": args.traces,
        "ingest": ingest,
        "queries": query_results,
        "loadavg": Path("/proc/loadavg").read_text().strip(),
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
