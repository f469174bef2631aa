"""Retention as a user runs it: `fleetdeck retention apply [--dry-run]` on the sample traces; the Engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import run_cli
from pydantic import ValidationError

from console.clock import utc_now
from console.engine import Engine
from console.policy import parse_policy
from console.settings import Settings
from console.store import audit, rollups
from console.store.seed import sample_traces_dir

ROW = re.compile(r"^(\S+)\s+(\d+)$")


def counts(report: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for line in report.splitlines() if (m := ROW.match(line))}


def query(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    done = run_cli(data_dir, "query", sql, "--format", "json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = orjson.loads(done.stdout)
    return rows


def figures(data_dir: Path, start: str, end: str) -> tuple[Any, Any]:
    """Cost per outcome and the scorecard over a window that retention keeps whole."""
    window = ("--param", f"from={start}", "--param", f"to={end}")
    cost = run_cli(data_dir, "query", "--name", "cost_per_outcome", *window, "--format", "json")
    card = run_cli(data_dir, "scorecard", "--format", "json", "--from", start, "--to", end)
    assert cost.returncode == card.returncode == 0, cost.stderr + card.stderr
    scorecard = orjson.loads(card.stdout)
    scorecard.pop("generated_at", None)
    return rounded(orjson.loads(cost.stdout)), rounded(scorecard)


def rounded(value: Any) -> Any:
    """Floats to 12 significant digits: DuckDB's parallel sums may differ in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("retention") / "data"
    done = run_cli(data_dir, "import", str(sample_traces_dir()), "--rebase-to-now")
    assert done.returncode == 0, done.stderr
    return data_dir


def test_dry_run_and_apply_agree_and_the_chain_still_verifies(sample: Path) -> None:
    month_ago = "(now() AT TIME ZONE 'UTC')::TIMESTAMP - INTERVAL 30 DAY"
    (before,) = query(
        sample, f"SELECT count(*) FILTER (ts < {month_ago}) AS old, count(*) AS n FROM payloads"
    )
    assert 0 < before["old"] < before["n"], "the sample should have payloads on both sides of the window"
    (newest,) = query(sample, "SELECT strftime(max(ts_start), '%Y-%m-%dT%H:%M:%S') AS t FROM traces")
    end = datetime.fromisoformat(newest["t"]) + timedelta(seconds=1)
    window = ((end - timedelta(days=14)).isoformat(), end.isoformat())
    kept_figures = figures(sample, *window)

    dry = run_cli(sample, "retention", "apply", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    applied = run_cli(sample, "retention", "apply")
    assert applied.returncode == 0, applied.stderr
    assert counts(dry.stdout) == counts(applied.stdout)
    assert counts(applied.stdout)["payloads"] == before["old"]
    assert "dry run" in dry.stdout and "would delete" in dry.stdout

    (after,) = query(sample, f"SELECT count(*) FILTER (ts < {month_ago}) AS old, count(*) AS n FROM payloads")
    assert (after["old"], after["n"]) == (0, before["n"] - before["old"])
    assert figures(sample, *window) == kept_figures

    verified = run_cli(sample, "audit", "verify")
    assert verified.returncode == 0, verified.stderr + verified.stdout
    assert "holds" in verified.stdout + verified.stderr
    entries = query(sample, "SELECT actor, payload FROM audit_log WHERE action = 'retention.applied'")
    assert len(entries) == 1
    assert orjson.loads(entries[0]["payload"])["rows"] == counts(applied.stdout)

    again = run_cli(sample, "retention", "apply")
    assert sum(counts(again.stdout).values()) == 0
    assert len(query(sample, "SELECT 1 FROM audit_log WHERE action = 'retention.applied'")) == 1


def test_an_audit_retention_below_six_months_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"Art\. 19"):
        Settings(data_dir=tmp_path, audit_retention_days=90)
    with pytest.raises(ValidationError, match="at least 183 days"):
        Settings(data_dir=tmp_path, trace_retention_days=182)
    done = subprocess.run(
        [sys.executable, "-m", "console", "retention", "apply", "--data-dir", str(tmp_path)],
        env={**os.environ, "FLEETDECK_AUDIT_RETENTION_DAYS": "90"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "audit_retention_days" in done.stderr and "183" in done.stderr and "Traceback" not in done.stderr


def _old_call(engine: Engine, request_id: str, days: int) -> None:
    cur = engine.db.cursor()
    when = utc_now() - timedelta(days=days)
    cur.execute(
        "INSERT INTO traces (request_id, ts_start, status, task_id, cost_usd, payload_ref) "
        "VALUES (?, ?, 'ok', ?, 1, ?)",
        [request_id, when, f"task-{request_id}", request_id],
    )
    cur.execute("INSERT INTO payloads VALUES (?, ?, ?, '{}', '{}')", [request_id, request_id, when])
    cur.execute(
        "INSERT INTO evals (eval_id, request_id, evaluator, verdict, ts) "
        "VALUES (?, ?, 'judge:x', 'correct', ?)",
        [f"e-{request_id}", request_id, when],
    )
    cur.execute(
        "INSERT INTO outcomes VALUES (?, NULL, 'resolved', 1, ?, 'app')", [f"task-{request_id}", when]
    )
    rollups.rebuild(cur)  # rows written past the recorder


def test_old_traces_go_with_their_evals_outcomes_and_payloads_and_audit_keeps_its_entries(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", audit_retention_days=183)
    with Engine(settings) as engine:
        engine.start_recorder()
        _old_call(engine, "ancient", 500)
        _old_call(engine, "recent-body", 45)  # past payload retention, within trace retention
        _old_call(engine, "fresh", 1)
        old = audit.AuditEvent(actor="ops", actor_kind="human", action="key.created", payload={"n": 1})
        old.ts = utc_now() - timedelta(days=200)
        engine.recorder.record_audit(old)
        engine.recorder.flush()
        run = engine.retention.apply(actor="ops@box", actor_kind="human")
        engine.recorder.flush()
        cur = engine.db.cursor()
        kept = {table: cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] for table in TABLES}
        refs = dict(cur.execute("SELECT request_id, payload_ref FROM traces").fetchall())
        cleared = cur.execute("SELECT payload IS NULL FROM audit_log WHERE action = 'key.created'").fetchall()
        verification = engine.verify_audit()
    assert run.rows["traces"] == run.rows["evals"] == run.rows["outcomes"] == 1
    assert (run.rows["payloads"], run.rows["traces.payload_ref"], run.rows["audit_log.payload"]) == (2, 1, 1)
    assert kept == {"traces": 2, "payloads": 1, "evals": 2, "outcomes": 2}
    assert refs == {"recent-body": None, "fresh": "fresh"}
    assert cleared == [(True,)]
    assert verification.ok, verification.report()


TABLES = ("traces", "payloads", "evals", "outcomes")


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[Engine]:
    settings = Settings(data_dir=tmp_path / "data", retention_interval_s=0.05)
    with FakeOpenAI(models=["m"]) as fake, Engine(settings) as engine:
        policy = parse_policy(
            f"providers:\n  lab:\n    kind: openai_compat\n    base_url: {fake.base_url}\n"
            "    prices: {m: {input: 1.0, output: 2.0}}\nroutes:\n  - intent: chat\n    primary: lab/m\n"
        )
        engine.open_gateway(policy, port=0)
        _old_call(engine, "stale", 45)
        engine.start()
        yield engine


def test_the_serving_engine_applies_retention_on_its_own(serving: Engine) -> None:
    assert serving.retention.schedule.ran.wait(timeout=60), "no scheduled retention run"
    serving.recorder.flush()
    cur = serving.db.cursor()
    assert cur.execute("SELECT count(*) FROM payloads").fetchall() == [(0,)]
    assert cur.execute("SELECT count(*) FROM traces").fetchall() == [(1,)]
    (entry,) = cur.execute(
        "SELECT actor, payload FROM audit_log WHERE action = 'retention.applied'"
    ).fetchall()
    assert entry[0] == "fleetdeck:retention"
    assert orjson.loads(entry[1])["rows"]["payloads"] == 1
