"""The query surface reads the store only: escape attempts against every surface that runs SQL.

The corpus (tests/corpora/sql_escapes.jsonl) tries to read files, scan them by name, reach
the network, copy, export, attach, load extensions, change settings, show secrets, and to
hide any of that behind a second statement or a comment. Each attempt runs against the
SQL pane's executor, `fleetdeck query` (the real CLI) and the admin query endpoint of a
real `fleetdeck serve` over HTTP: none succeeds, each is refused with the same reason,
and the canary file's random token appears in no output.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, fleetdeck_serve, run_cli
from typer.testing import CliRunner

from console.cli import app
from console.gateway.admin import AdminEndpoint
from console.gateway.openai_api import ApiError
from console.store import adhoc
from console.store.db import Database
from console.tui.readmodel import sql as sql_core

CORPUS = Path(__file__).parent / "corpora" / "sql_escapes.jsonl"
REFUSAL = "the query surface reads the store only"
POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{base_url}", prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - {{intent: chat, primary: lab/m, max_retries: 0}}
default_route: chat
"""


@dataclass(frozen=True)
class Attempt:
    id: str
    kind: str
    sql: str


@dataclass(frozen=True)
class Canary:
    dir: Path
    token: str


def attempts(canary: Canary, data_dir: Path) -> list[Attempt]:
    found = []
    for line in CORPUS.read_text().splitlines():
        item = orjson.loads(line)
        sql = item["sql"].format(canary=canary.dir / "canary.txt", canary_dir=canary.dir, data_dir=data_dir)
        found.append(Attempt(item["id"], item["kind"], sql))
    return found


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Canary:
    where = tmp_path_factory.mktemp("canary")
    token = f"canary-{secrets.token_hex(16)}"
    (where / "canary.txt").write_text(f"{token}\n")
    (where / "canary.csv").write_text(f"secret\n{token}\n")
    return Canary(where, token)


def test_the_corpus_covers_every_kind_of_escape() -> None:
    kinds = [orjson.loads(line)["kind"] for line in CORPUS.read_text().splitlines()]
    assert len(kinds) >= 40
    required = {"read_text", "read_blob", "read_csv", "read_json", "read_parquet", "glob"}
    required |= {"replacement_scan", "copy", "export", "import", "attach", "extension", "settings"}
    assert required | {"secrets", "multi_statement", "network"} <= set(kinds)


def test_the_sql_panes_executor_refuses_every_attempt(tmp_path: Path, canary: Canary) -> None:
    db = Database(tmp_path / "data" / "fleetdeck.duckdb")
    cur = db.new_cursor()
    try:
        for attempt in attempts(canary, tmp_path / "data"):
            for run in (
                lambda sql: sql_core.run_capped(cur, sql),
                lambda sql: sql_core.export(cur, sql, tmp_path / "out.csv", sql_core.ExportFormat.csv),
            ):
                with pytest.raises(adhoc.QueryRefused) as refused:
                    run(attempt.sql)
                assert REFUSAL in str(refused.value), attempt
                assert canary.token not in str(refused.value), attempt
        assert not (tmp_path / "out.csv").exists()
        assert sorted(p.name for p in canary.dir.iterdir()) == ["canary.csv", "canary.txt"]
    finally:
        cur.close()
        db.close()


def test_fleetdeck_query_refuses_every_attempt(tmp_path: Path, canary: Canary) -> None:
    data_dir = tmp_path / "data"
    runner = CliRunner()
    for attempt in attempts(canary, data_dir):
        done = runner.invoke(app, ["query", attempt.sql, "--data-dir", str(data_dir)])
        assert done.exit_code == 2, (attempt, done.output)
        assert REFUSAL in done.output, (attempt, done.output)
        assert canary.token not in done.output, attempt
    assert sorted(p.name for p in canary.dir.iterdir()) == ["canary.csv", "canary.txt"]


def test_a_child_process_query_cannot_read_the_canary_either(tmp_path: Path, canary: Canary) -> None:
    done = run_cli(tmp_path / "data", "query", f"SELECT * FROM read_csv('{canary.dir / 'canary.csv'}')")
    assert done.returncode == 2
    assert REFUSAL in done.stderr
    assert canary.token not in done.stdout + done.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("sandbox") / "data"
    with FakeOpenAI() as upstream, fleetdeck_serve(data_dir, POLICY.format(base_url=upstream.base_url)) as up:
        yield up


def test_the_admin_query_endpoint_refuses_every_attempt(served: Served, canary: Canary) -> None:
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    assert endpoint.query({"sql": "SELECT count(*) AS n FROM traces"}).to_pylist() == [{"n": 0}]
    for attempt in attempts(canary, served.data_dir):
        with pytest.raises(ApiError) as refused:
            endpoint.query({"sql": attempt.sql})
        assert (refused.value.status, refused.value.code) == (400, "query_refused"), attempt
        assert REFUSAL in refused.value.message, attempt
        assert canary.token not in refused.value.message, attempt


def test_the_cli_through_a_running_instance_is_refused_alike(served: Served, canary: Canary) -> None:
    done = run_cli(served.data_dir, "query", f"SELECT content FROM read_text('{canary.dir / 'canary.txt'}')")
    assert done.returncode == 2
    assert REFUSAL in done.stderr
    assert canary.token not in done.stdout + done.stderr
    assert canary.token not in "".join(served.output)


def test_ordinary_analysis_still_runs(tmp_path: Path) -> None:
    db = Database(tmp_path / "f.duckdb")
    cur = db.new_cursor()
    try:
        cur.execute("INSERT INTO traces (request_id, ts_start, status) VALUES ('r1', now(), 'ok')")
        for sql in (
            "SHOW TABLES",
            "DESCRIBE traces",
            "SUMMARIZE traces",
            "EXPLAIN SELECT count(*) FROM traces",
            "FROM range(3)",
            "SELECT unnest([1, 2]) AS n",
            "SELECT table_name FROM duckdb_tables() WHERE table_name = 'traces'",
            "WITH t AS (SELECT * FROM traces) SELECT count(*) FROM t -- a comment; DROP TABLE traces",
        ):
            assert sql_core.run_capped(cur, sql).total_rows >= 1, sql
    finally:
        cur.close()
        db.close()


def test_the_panes_export_is_written_from_arrow(tmp_path: Path) -> None:
    db = Database(tmp_path / "f.duckdb")
    cur = db.new_cursor()
    try:
        cur.execute(
            "INSERT INTO traces (request_id, ts_start, status, finish_reasons) "
            "SELECT 'r' || range, TIMESTAMP '2026-03-01' + range * INTERVAL 1 SECOND, 'ok', ['stop'] "
            "FROM range(70000)"
        )
        sql = "SELECT request_id, ts_start, finish_reasons FROM traces ORDER BY request_id"
        as_parquet = sql_core.export(cur, sql, tmp_path / "out" / "t.parquet", sql_core.ExportFormat.parquet)
        as_csv = sql_core.export(cur, sql, tmp_path / "out" / "t.csv", sql_core.ExportFormat.csv)
        expected = cur.sql(sql).to_arrow_table()
    finally:
        cur.close()
        db.close()
    assert as_parquet == as_csv == 70_000
    assert pq.read_table(tmp_path / "out" / "t.parquet").equals(expected)
    written = pacsv.read_csv(tmp_path / "out" / "t.csv")
    assert written.column("request_id").to_pylist() == expected.column("request_id").to_pylist()
    assert set(written.column("finish_reasons").to_pylist()) == {'["stop"]'}


def test_the_stores_instance_is_locked_down(tmp_path: Path) -> None:
    db = Database(tmp_path / "f.duckdb")
    try:
        settings = dict(
            db.cursor()
            .execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
                "'lock_configuration', 'autoload_known_extensions', 'autoinstall_known_extensions', "
                "'allow_community_extensions', 'allow_unsigned_extensions', 'python_enable_replacements')"
            )
            .fetchall()
        )
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            db.cursor().execute("SET enable_external_access = true")
    finally:
        db.close()
    assert settings == {
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false",
        "allow_community_extensions": "false",
        "allow_unsigned_extensions": "false",
        "python_enable_replacements": "false",
    }
