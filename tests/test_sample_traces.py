"""The shipped sample dataset: reproducible, loadable into the store, and every scripted scenario visible."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import rfc8785
from ulid import ULID

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces"
TABLES = ("traces", "payloads", "outcomes", "evals", "audit_log")
START, END = datetime(2026, 9, 7), datetime(2026, 11, 2)
WEEK = "1 + date_diff('day', TIMESTAMP '2026-09-07', ts_start) // 7"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sample_traces_generate", SAMPLE / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for path in sorted((ROOT / "console" / "store" / "migrations").glob("*.sql")):
        con.execute(path.read_text())
    for table in TABLES:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet('{SAMPLE / table}.parquet')")
    yield con
    con.close()


def one(db: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    row = db.execute(sql, params or []).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def test_regenerating_with_the_seed_gives_the_shipped_tables(gen: ModuleType, tmp_path: Path) -> None:
    gen.main(["--seed", str(gen.DEFAULT_SEED), "--out", str(tmp_path)])
    for table in TABLES:
        fresh = pq.read_table(tmp_path / f"{table}.parquet")
        shipped = pq.read_table(SAMPLE / f"{table}.parquet")
        assert fresh.equals(shipped), table


def test_files_match_the_store_schema_and_size(gen: ModuleType, db: duckdb.DuckDBPyConnection) -> None:
    schemas = gen.schemas()
    total = 0
    for table in TABLES:
        path = SAMPLE / f"{table}.parquet"
        total += path.stat().st_size
        assert pq.read_schema(path).equals(schemas[table], check_metadata=False), table
        assert one(db, f"SELECT count(*) FROM {table}") == pq.ParquetFile(path).metadata.num_rows
    assert total <= 15_000_000


def test_volume_and_span(db: duckdb.DuckDBPyConnection) -> None:
    assert one(db, "SELECT count(*) FROM traces") >= 50_000
    first, last = one(db, "SELECT min(ts_start), max(ts_end) FROM traces")
    assert START <= first < START + timedelta(hours=6)
    assert END - timedelta(hours=12) < last < END
    assert one(db, f"SELECT count(DISTINCT {WEEK}) FROM traces") == 8
    for table in ("outcomes", "evals", "audit_log"):
        lo, hi = one(db, f"SELECT min(ts), max(ts) FROM {table}")
        assert lo >= START and hi < END, table
    workflows = {r[0] for r in db.execute("SELECT DISTINCT workflow_id FROM traces").fetchall()}
    assert workflows == {
        "invoice_parsing",
        "support_triage",
        "internal_doc_summaries",
        "refund_agent",
        "fleetdeck-judge",
    }


def test_daily_and_weekly_cycles(db: duckdb.DuckDBPyConnection) -> None:
    day, night = one(
        db,
        "SELECT count(*) FILTER (hour(ts_start) BETWEEN 9 AND 16) / 8, "
        "count(*) FILTER (hour(ts_start) BETWEEN 0 AND 4) / 5 FROM traces",
    )
    assert day > 4 * night
    weekday, weekend = one(
        db,
        "SELECT count(*) FILTER (isodow(ts_start) <= 5) / 5, count(*) FILTER (isodow(ts_start) > 5) / 2 "
        "FROM traces WHERE workflow_id = 'internal_doc_summaries'",
    )
    assert weekday > 3 * weekend


def test_every_traced_task_has_exactly_one_outcome_of_its_workflow(db: duckdb.DuckDBPyConnection) -> None:
    assert one(db, "SELECT count(*) FROM traces WHERE task_id IS NULL") == 0
    missing = "SELECT count(DISTINCT task_id) FROM traces WHERE task_id NOT IN (SELECT task_id FROM outcomes)"
    assert one(db, missing) == 0
    assert one(db, "SELECT count(*) FROM outcomes WHERE task_id NOT IN (SELECT task_id FROM traces)") == 0
    assert one(db, "SELECT count(*) FROM outcomes WHERE workflow_id = 'fleetdeck-judge'") == 0
    mismatched = """
        SELECT count(*) FROM outcomes o
        JOIN (SELECT DISTINCT task_id, workflow_id FROM traces WHERE workflow_id <> 'fleetdeck-judge') t
          USING (task_id)
        WHERE t.workflow_id <> o.workflow_id"""
    assert one(db, mismatched) == 0
    early = "SELECT count(*) FROM outcomes o JOIN traces t USING (task_id, workflow_id) WHERE o.ts < t.ts_end"
    assert one(db, early) == 0  # judge calls may come after the outcome


def test_judge_calls_are_traces_of_the_judged_task(db: duckdb.DuckDBPyConnection) -> None:
    bad = """
        SELECT count(*) FROM evals e
        JOIN traces judged ON judged.request_id = e.request_id
        LEFT JOIN traces judge ON judge.request_id = e.judge_request_id
        WHERE judge.request_id IS NULL OR judge.workflow_id <> 'fleetdeck-judge' OR judge.intent <> 'judge'
           OR judge.task_id <> judged.task_id OR judge.cost_usd <> e.judge_cost_usd
           OR judge.parent_id <> judged.request_id OR judged.workflow_id = 'fleetdeck-judge'"""
    assert one(db, bad) == 0
    evals, judged_calls = one(
        db,
        "SELECT (SELECT count(*) FROM evals), "
        "count(*) FILTER (workflow_id <> 'fleetdeck-judge' AND status IN ('ok', 'partial')) FROM traces",
    )
    assert 0.05 <= evals / judged_calls <= 0.10
    assert one(db, "SELECT count(*) FROM evals WHERE verdict NOT IN ('correct', 'partial', 'incorrect')") == 0
    components = {r[0] for r in db.execute("SELECT DISTINCT component FROM evals").fetchall()}
    assert components == {"retrieval", "tool_selection", "policy_compliance", "answer"}


def test_prices_come_from_genai_prices_or_local_compute(db: duckdb.DuckDBPyConnection) -> None:
    sources = dict(
        db.execute(
            "SELECT provider, string_agg(DISTINCT price_source, ',') FROM traces "
            "WHERE status IN ('ok', 'partial') GROUP BY 1"
        ).fetchall()
    )
    assert sources == {"local": "local-compute", "openai": "genai-prices", "anthropic": "genai-prices"}
    free = (
        "SELECT count(*) FROM traces "
        "WHERE status IN ('cached', 'over_budget', 'blocked', 'error') AND cost_usd <> 0"
    )
    assert one(db, free) == 0
    local = (
        "SELECT max(abs(cost_usd - latency_ms / 3.6e6 * 0.40)) FROM traces "
        "WHERE provider = 'local' AND attempts = 1"
    )
    assert one(db, local) < 1e-6
    from genai_prices import Usage, calc_price

    row = db.execute(
        "SELECT input_tokens, output_tokens, cache_read_tokens, cost_usd, ts_start FROM traces "
        "WHERE response_model = 'anthropic/claude-sonnet-4' AND cache_read_tokens > 0 LIMIT 1"
    ).fetchone()
    assert row is not None
    usage = Usage(input_tokens=row[0], output_tokens=row[1], cache_read_tokens=row[2])
    expected = calc_price(
        usage, "claude-sonnet-4", provider_id="anthropic", genai_request_timestamp=row[4].replace(tzinfo=UTC)
    )
    assert row[3] == pytest.approx(float(expected.total_price))


def test_doc_summaries_hit_the_cache(db: duckdb.DuckDBPyConnection) -> None:
    share = one(
        db,
        "SELECT avg((cache IN ('exact', 'semantic'))::INT) FROM traces "
        "WHERE workflow_id = 'internal_doc_summaries'",
    )
    assert 0.15 <= share <= 0.30
    local = "SELECT avg((response_model = 'local/smollm2-135m')::INT) FROM traces "
    assert one(db, local + "WHERE workflow_id = 'internal_doc_summaries'") > 0.8


def test_request_ids_are_ulids_of_their_start(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute("SELECT request_id, epoch_us(ts_start) // 1000 FROM traces").fetchall()
    assert all(ULID.from_str(rid).milliseconds == ms for rid, ms in rows)


def test_scenario_provider_outage_week_3(db: duckdb.DuckDBPyConnection) -> None:
    by_week = dict(
        db.execute(
            f"SELECT {WEEK}, count(*) FROM traces WHERE reason_code = 'provider-outage-fallback' GROUP BY 1"
        ).fetchall()
    )
    assert by_week[3] > 5 * max(v for w, v in by_week.items() if w != 3)
    served = """
        SELECT count(*) FROM traces
        WHERE workflow_id = 'support_triage' AND reason_code = 'provider-outage-fallback'
          AND provider = 'anthropic' AND ts_start BETWEEN '2026-09-22 13:00' AND '2026-09-22 17:00'
          AND attempt_log->>'$[0].provider' = 'openai' AND attempt_log->>'$[0].status' <> 'ok'"""
    assert one(db, served) > 50
    week_3 = f"SELECT action FROM audit_log WHERE {WEEK.replace('ts_start', 'ts')} = 3"
    actions = {r[0] for r in db.execute(week_3).fetchall()}
    assert {"breaker.opened", "breaker.closed", "route.fallback"} <= actions


def test_scenario_runaway_agent_week_4(db: duckdb.DuckDBPyConnection) -> None:
    days = db.execute(
        "SELECT ts_start::DATE, max(step), sum(cost_usd) FROM traces "
        "WHERE workflow_id = 'refund_agent' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    spike = next(d for d in days if str(d[0]) == "2026-10-01")
    others = sorted(d[2] for d in days if d != spike)
    assert spike[1] >= 30 and max(d[1] for d in days if d != spike) <= 12
    assert spike[2] > 10 * others[len(others) // 2]
    loops = """
        SELECT o.status, count(*) FROM outcomes o
        WHERE task_id IN (SELECT task_id FROM traces WHERE workflow_id = 'refund_agent' AND step > 15)
        GROUP BY 1"""
    assert {r[0] for r in db.execute(loops).fetchall()} <= {"abandoned", "failed"}
    assert one(db, "SELECT count(*) FROM audit_log WHERE action IN ('route.stopped', 'route.resumed')") == 2


def test_scenario_quality_drift_from_week_6(db: duckdb.DuckDBPyConnection) -> None:
    before, after = one(
        db,
        f"""SELECT avg((verdict = 'incorrect')::INT) FILTER ({WEEK} <= 5),
                   avg((verdict = 'incorrect')::INT) FILTER ({WEEK} >= 6)
            FROM evals e JOIN traces t USING (request_id) WHERE t.workflow_id = 'invoice_parsing'""",
    )
    assert after > 2 * before and after - before > 0.1
    weekly = db.execute(
        f"SELECT {WEEK}, avg(schema_valid::INT) FROM traces WHERE workflow_id = 'invoice_parsing' GROUP BY 1"
    ).fetchall()
    assert min(v for w, v in weekly if w <= 5) > max(v for w, v in weekly if w >= 6) + 0.05
    assert (
        one(db, "SELECT count(*) FROM audit_log WHERE action = 'prompt.pin' AND subject LIKE '%invoice%'")
        == 1
    )


def test_scenario_approvals_and_overrides(db: duckdb.DuckDBPyConnection) -> None:
    counts = dict(
        db.execute("SELECT action || ':' || actor_kind, count(*) FROM audit_log GROUP BY 1").fetchall()
    )
    assert counts["approval.requested:key"] > 100
    assert counts["approval.granted:human"] > 100
    assert counts["approval.denied:human"] > 10
    assert counts["override:human"] > 10
    unlinked = """
        SELECT count(*) FROM audit_log a
        LEFT JOIN traces t ON t.request_id = a.payload->>'request_id'
        WHERE a.action = 'approval.requested'
          AND (t.request_id IS NULL OR t.tool_calls->>'$[0].name' <> 'payments.issue_refund'
               OR t.tool_calls->>'$[0].approval_id' <> replace(a.subject, 'approval:', ''))"""
    assert one(db, unlinked) == 0
    undecided = """
        SELECT count(*) FROM audit_log r WHERE r.action = 'approval.requested' AND NOT EXISTS (
            SELECT 1 FROM audit_log d WHERE d.subject = r.subject AND d.actor_kind = 'human')"""
    assert one(db, undecided) == 0


def test_scenario_budget_breach_week_7(db: duckdb.DuckDBPyConnection, gen: ModuleType) -> None:
    rows = one(
        db,
        f"""SELECT count(*), min({WEEK}), max({WEEK}), min(ts_start), bool_and(reason_code = 'budget-exceeded'
                   AND http_status = 429 AND cost_usd = 0 AND key_id = 'k-invoice-backfill')
            FROM traces WHERE status = 'over_budget'""",
    )
    assert rows[0] > 100 and rows[1] == rows[2] == 7 and rows[4]
    spent = one(db, "SELECT sum(cost_usd) FROM traces WHERE key_id = 'k-invoice-backfill'")
    assert 0.9 * gen.BACKFILL_CAP_USD < spent <= gen.BACKFILL_CAP_USD
    breach = one(db, "SELECT min(ts) FROM audit_log WHERE action = 'budget.breach'")
    assert breach == rows[3]
    later = (
        "SELECT count(*) FROM traces WHERE key_id = 'k-invoice-backfill' AND ts_start > ? AND status = 'ok'"
    )
    assert one(db, later, [breach]) == 0


def test_audit_log_is_a_verifiable_hash_chain(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute(
        "SELECT seq, ts, actor, actor_kind, action, subject, payload, event_id, payload_hash, "
        "prev_hash, canonical, hash FROM audit_log ORDER BY seq"
    ).fetchall()
    prev = "0" * 64
    last_ts = datetime.min
    for index, row in enumerate(rows, start=1):
        seq, ts, actor, kind, action, subject, payload, event_id, payload_hash, prev_hash, text, digest = row
        assert seq == index and ts >= last_ts and prev_hash == prev
        assert hashlib.sha256(rfc8785.dumps(json.loads(payload))).hexdigest() == payload_hash
        signed = {
            "seq": seq,
            "ts": ts.isoformat(timespec="microseconds"),
            "actor": actor,
            "actor_kind": kind,
            "action": action,
            "subject": subject,
            "event_id": event_id,
            "payload_hash": payload_hash,
            "prev_hash": prev,
        }
        assert rfc8785.dumps(signed).decode() == text, seq
        assert hashlib.sha256(text.encode()).hexdigest() == digest, seq
        prev, last_ts = digest, ts
