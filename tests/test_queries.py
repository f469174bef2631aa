from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from console.store import queries, rollups
from console.store.db import Database
from console.store.importer import import_files
from console.store.seed import sample_traces_dir

NAMES = [query.name for query in queries.available()]
REQUIRED = {
    "cost_per_outcome",
    "spend_by_route_daily",
    "routing_share",
    "error_rate",
    "latency_slo",
    "cache_hit_rate",
    "audit_trail",
    "overrides",
    "budget_burn",
}
SAMPLE_VALUES = {
    "TIMESTAMP": "2026-03-01",
    "DOUBLE": "1500",
    "INTEGER": "10",
    "BIGINT": "10",
    "VARCHAR": "nothing-matches-this",
    "BOOLEAN": "true",
}
FROM, TO = datetime(2026, 3, 1), datetime(2026, 3, 8)
JUDGE = "fleetdeck-judge"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "f.duckdb")
    yield database
    database.close()


@pytest.fixture
def cur(db: Database) -> duckdb.DuckDBPyConnection:
    return db.cursor()


def rows(cur: duckdb.DuckDBPyConnection, name: str, **params: object) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = queries.run(cur, name, params).to_pylist()
    return result


def add_traces(cur: duckdb.DuckDBPyConnection, *traces: dict[str, object]) -> None:
    for number, trace in enumerate(traces):
        values = {"request_id": f"r{number:03d}", "status": "ok", **trace}
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur.execute(f"INSERT INTO traces ({columns}) VALUES ({marks})", list(values.values()))
    rollups.rebuild(cur)  # rows written past the recorder: the rollups are made again


def add_outcomes(cur: duckdb.DuckDBPyConnection, *outcomes: tuple[str, str | None, str]) -> None:
    cur.executemany(
        "INSERT INTO outcomes (task_id, workflow_id, status, ts) VALUES (?, ?, ?, TIMESTAMP '2026-03-10')",
        [list(outcome) for outcome in outcomes],
    )
    rollups.rebuild(cur)


# --- the files in queries/ ---------------------------------------------------------------


def test_the_required_queries_are_there() -> None:
    assert set(NAMES) >= REQUIRED


@pytest.mark.parametrize("name", NAMES)
def test_header_is_complete(name: str) -> None:
    query = queries.load(name)
    assert query.name == name
    assert query.purpose and "\n" not in query.purpose
    assert query.users
    assert query.sql.lstrip().upper().startswith(("WITH", "SELECT"))
    for param in query.params:
        assert param.type in queries.PARSERS
        assert param.default and param.description


def dollar_names(sql: str) -> set[str]:
    """An independent reading of the $names: drop comments and string literals, then look."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    without_strings = re.sub(r"'[^']*'", "''", without_comments)
    return set(re.findall(r"\$([A-Za-z_]\w*)", without_strings))


@pytest.mark.parametrize("name", NAMES)
def test_header_params_are_the_sql_params(name: str) -> None:
    query = queries.load(name)
    declared = [param.name for param in query.params]
    assert len(declared) == len(set(declared))
    assert set(declared) == dollar_names(query.sql)


SCHEMA_QUERIES = frozenset({"sql_catalog"})


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_an_empty_database_without_warnings(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    query = queries.load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = queries.run(cur, name, {}).num_rows
        # sql_catalog reads the schema, not the data: an empty store still has its tables.
        assert rows > 0 if name in SCHEMA_QUERIES else rows == 0
        given = {param.name: SAMPLE_VALUES[param.type] for param in query.params}
        again = queries.run(cur, query, given).num_rows
        assert again > 0 if name in SCHEMA_QUERIES else again == 0


# --- loading and binding -------------------------------------------------------------------


def test_unknown_query_names_it_and_lists_the_available_ones() -> None:
    with pytest.raises(queries.UnknownQueryError) as caught:
        queries.load("cost_per_outcom")
    message = str(caught.value)
    assert "'cost_per_outcom'" in message
    assert "cost_per_outcome" in message and "budget_burn" in message


@pytest.mark.parametrize("name", ["../pyproject", "Cost_Per_Outcome", "", "a/b"])
def test_names_that_are_not_query_names_are_unknown(name: str) -> None:
    with pytest.raises(queries.UnknownQueryError):
        queries.load(name)


def test_bind_converts_strings_to_the_declared_types() -> None:
    bound = queries.load("latency_slo").bind(
        {"from": "2026-03-01", "to": "2026-03-02T10:30:00Z", "slo_ms": "2500"}
    )
    assert bound == {
        "from": datetime(2026, 3, 1),
        "to": datetime(2026, 3, 2, 10, 30),
        "route": None,
        "slo_ms": 2500.0,
    }


def test_bind_turns_aware_timestamps_into_naive_utc() -> None:
    bound = queries.load("audit_trail").bind({"from": "2026-03-01T10:00:00+02:00"})
    assert bound["from"] == datetime(2026, 3, 1, 8, 0)


def test_bind_takes_python_values_and_empty_strings_mean_the_default() -> None:
    query = queries.load("latency_slo")
    bound = query.bind({"from": datetime(2026, 3, 1, 7), "slo_ms": 900, "route": "", "to": None})
    assert bound == {"from": datetime(2026, 3, 1, 7), "to": None, "route": None, "slo_ms": 900.0}


def test_unknown_parameter_is_named_with_the_ones_the_query_takes() -> None:
    with pytest.raises(queries.QueryParamError) as caught:
        queries.load("cost_per_outcome").bind({"workflw": "support"})
    message = str(caught.value)
    assert "'workflw'" in message and "cost_per_outcome" in message
    assert "from, to, workflow" in message


@pytest.mark.parametrize(
    ("name", "param", "value", "expected_type"),
    [
        ("cost_per_outcome", "from", "last tuesday", "TIMESTAMP"),
        ("cost_per_outcome", "to", "2026-13-01", "TIMESTAMP"),
        ("latency_slo", "slo_ms", "fast", "DOUBLE"),
        ("latency_slo", "slo_ms", "nan", "DOUBLE"),
        ("latency_slo", "slo_ms", True, "DOUBLE"),
        ("audit_trail", "actor", ["alice"], "VARCHAR"),
    ],
)
def test_unparseable_values_name_parameter_value_and_type(
    name: str, param: str, value: object, expected_type: str
) -> None:
    with pytest.raises(queries.QueryParamError) as caught:
        queries.load(name).bind({param: value})
    message = str(caught.value)
    assert f"'{param}'" in message and repr(value) in message and expected_type in message
    assert name in message


def custom(header_params: str, sql: str) -> queries.NamedQuery:
    text = f"-- custom: a test query\n{header_params}-- users: tests\n{sql}\n"
    return queries.parse("custom", text)


def test_integer_boolean_and_bigint_params() -> None:
    query = custom(
        "-- param n: INTEGER = 10 | rows\n"
        "-- param big: BIGINT = 0 | big\n"
        "-- param on: BOOLEAN = false | flag\n",
        "SELECT $n::INTEGER AS n, $big::BIGINT AS big, $on::BOOLEAN AS flag",
    )
    assert query.bind({"n": "7", "big": str(2**40), "on": "yes"}) == {"n": 7, "big": 2**40, "on": True}
    assert query.bind({"on": "off"})["on"] is False
    for raw in ({"n": str(2**31)}, {"n": "1.5"}, {"on": "maybe"}, {"big": str(2**63)}):
        with pytest.raises(queries.QueryParamError):
            query.bind(raw)


@pytest.mark.parametrize(
    ("params", "sql", "problem"),
    [
        ("", "SELECT $x AS x", "undeclared parameters: $x"),
        ("-- param x: VARCHAR = all | x\n", "SELECT 1", "never uses: x"),
        ("-- param x: TEXT = all | x\n", "SELECT $x", "unknown type 'TEXT'"),
        ("-- param x VARCHAR all\n", "SELECT $x", "expected 'param <name>"),
        ("-- param x: VARCHAR = a | x\n-- param x: VARCHAR = a | x\n", "SELECT $x", "declared twice"),
    ],
)
def test_malformed_headers_are_refused(params: str, sql: str, problem: str) -> None:
    with pytest.raises(queries.QueryDefinitionError, match=re.escape(problem)):
        custom(params, sql)


def test_header_must_start_with_the_file_name() -> None:
    with pytest.raises(queries.QueryDefinitionError, match="line 1"):
        queries.parse("custom", "-- other: purpose\n-- users: tests\nSELECT 1\n")


def test_dollars_in_strings_and_comments_are_not_parameters() -> None:
    assert queries.sql_param_names("SELECT '$a', \"$b\" -- $c\n, /* $d */ $e, $$ $f $$") == {"e"}


def test_queries_dir_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "answer.sql").write_text(
        "-- answer: the answer\n"
        "-- param plus: INTEGER = 0 | added\n"
        "-- users: tests\n"
        "SELECT 42 + coalesce($plus::INTEGER, 0) AS a\n"
    )
    monkeypatch.setenv("FLEETDECK_QUERIES_DIR", str(tmp_path))
    assert [query.name for query in queries.available()] == ["answer"]
    with duckdb.connect() as conn:
        assert queries.run(conn, "answer", {"plus": "1"}).to_pylist() == [{"a": 43}]


# --- cost_per_outcome on a hand-built dataset ----------------------------------------------


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, 3, 1) + timedelta(days=day - 1, hours=hour, minutes=minute)


@pytest.fixture
def tasks(cur: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Tasks of three workflows; the window is [March 1, March 8).

    support:  S1 retried call (error 0.10, then ok 0.20) + judge call 0.01, resolved
              S2 ok 0.05, fallback 0.15, then a blocked call with no cost, failed
              S3 first call Feb 27 (1.00), then Mar 2 (2.00), resolved: not in the window
              S4 first call Mar 7 23:59 (0.04), next call Mar 8 00:30 (0.06), resolved
              S6 first call exactly Mar 1 00:00 (0.07), resolved
              S5 first call exactly Mar 8 00:00 (0.50), resolved: not in the window
    invoices: I1 0.50 + judge call 0.02, no outcome yet (workflow from its first call)
              I2 traces say invoices_beta (0.30), the outcome says invoices, resolved
    ops:      O1 0.40, abandoned
    no task:  9.99, counted nowhere
    """
    add_traces(
        cur,
        {
            "task_id": "S1",
            "workflow_id": "support",
            "ts_start": at(2, 10),
            "cost_usd": 0.10,
            "status": "error",
        },
        {"task_id": "S1", "workflow_id": "support", "ts_start": at(2, 10, 1), "cost_usd": 0.20},
        {"task_id": "S1", "workflow_id": JUDGE, "ts_start": at(2, 11), "cost_usd": 0.01},
        {"task_id": "S2", "workflow_id": "support", "ts_start": at(3), "cost_usd": 0.05, "status": "error"},
        {"task_id": "S2", "workflow_id": "support", "ts_start": at(3, 12, 1), "cost_usd": 0.15},
        {"task_id": "S2", "workflow_id": "support", "ts_start": at(3, 13), "status": "blocked"},
        {"task_id": "S3", "workflow_id": "support", "ts_start": datetime(2026, 2, 27), "cost_usd": 1.00},
        {"task_id": "S3", "workflow_id": "support", "ts_start": at(2), "cost_usd": 2.00},
        {"task_id": "S4", "workflow_id": "support", "ts_start": at(7, 23, 59), "cost_usd": 0.04},
        {"task_id": "S4", "workflow_id": "support", "ts_start": at(8, 0, 30), "cost_usd": 0.06},
        {"task_id": "S6", "workflow_id": "support", "ts_start": FROM, "cost_usd": 0.07},
        {"task_id": "S5", "workflow_id": "support", "ts_start": TO, "cost_usd": 0.50},
        {"task_id": "I1", "workflow_id": JUDGE, "ts_start": at(4, 9), "cost_usd": 0.02},
        {"task_id": "I1", "workflow_id": "invoices", "ts_start": at(4, 8), "cost_usd": 0.50},
        {"task_id": "I2", "workflow_id": "invoices_beta", "ts_start": at(5), "cost_usd": 0.30},
        {"task_id": "O1", "workflow_id": "ops", "ts_start": at(6), "cost_usd": 0.40, "status": "partial"},
        {"workflow_id": "support", "ts_start": at(4), "cost_usd": 9.99},
    )
    add_outcomes(
        cur,
        ("S1", "support", "resolved"),
        ("S2", "support", "failed"),
        ("S3", "support", "resolved"),
        ("S4", "support", "resolved"),
        ("S5", "support", "resolved"),
        ("S6", "support", "resolved"),
        ("I2", "invoices", "resolved"),
        ("O1", "ops", "abandoned"),
        ("X9", "support", "resolved"),  # an outcome with no trace
    )
    return cur


def test_cost_per_outcome_by_hand(tasks: duckdb.DuckDBPyConnection) -> None:
    result = {row["workflow_id"]: row for row in rows(tasks, "cost_per_outcome", **{"from": FROM, "to": TO})}
    assert set(result) == {"support", "invoices", "ops"}

    support = result["support"]  # S1, S2, S4, S6
    support_cost = (0.10 + 0.20 + 0.01) + (0.05 + 0.15) + (0.04 + 0.06) + 0.07
    assert support["tasks"] == 4
    assert support["resolved_tasks"] == 3
    assert support["failed_tasks"] == 1
    assert support["open_tasks"] == 0
    assert support["calls"] == 3 + 3 + 2 + 1
    assert support["judge_calls"] == 1
    assert support["judge_cost_usd"] == pytest.approx(0.01)
    assert support["total_cost_usd"] == pytest.approx(support_cost)
    assert support["cost_per_outcome_usd"] == pytest.approx(support_cost / 3)

    invoices = result["invoices"]  # I1 (open), I2 (resolved)
    assert (invoices["tasks"], invoices["resolved_tasks"], invoices["open_tasks"]) == (2, 1, 1)
    assert invoices["total_cost_usd"] == pytest.approx(0.50 + 0.02 + 0.30)
    assert invoices["cost_per_outcome_usd"] == pytest.approx(0.82)
    assert invoices["judge_cost_usd"] == pytest.approx(0.02)

    ops = result["ops"]
    assert (ops["tasks"], ops["resolved_tasks"], ops["abandoned_tasks"]) == (1, 0, 1)
    assert ops["total_cost_usd"] == pytest.approx(0.40)
    assert ops["cost_per_outcome_usd"] is None


def test_cost_per_outcome_filters_one_workflow(tasks: duckdb.DuckDBPyConnection) -> None:
    result = rows(
        tasks, "cost_per_outcome", **{"from": "2026-03-01", "to": "2026-03-08", "workflow": "invoices"}
    )
    assert [(row["workflow_id"], row["tasks"]) for row in result] == [("invoices", 2)]


def test_cost_per_outcome_default_window(tasks: duckdb.DuckDBPyConnection) -> None:
    recent = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    add_traces(tasks, {"request_id": "recent", "task_id": "N1", "workflow_id": "recent", "ts_start": recent})
    # `to` defaults to now (UTC) and `from` to 30 days before `to`.
    assert [row["workflow_id"] for row in rows(tasks, "cost_per_outcome")] == ["recent"]
    # With `to` = March 21, `from` is February 19: S3 (first call February 27) is in.
    by_workflow = {row["workflow_id"]: row for row in rows(tasks, "cost_per_outcome", to="2026-03-21")}
    assert set(by_workflow) == {"support", "invoices", "ops"}
    assert by_workflow["support"]["tasks"] == 6


# --- the other queries on a small hand-built dataset ---------------------------------------


@pytest.fixture
def traffic(cur: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    docs = {"route": "docs", "workflow_id": "docs", "provider": "local", "tier": "local", "key_id": "k1"}
    docs_model = {**docs, "response_model": "smollm2-135m", "cache": "miss"}
    support = {"route": "support", "workflow_id": "support", "key_id": "k2"}
    claude = {**support, "provider": "anthropic", "tier": "large", "response_model": "claude-sonnet"}
    add_traces(
        cur,
        {
            **docs_model,
            "ts_start": at(2),
            "latency_ms": 100,
            "ttft_ms": 20,
            "cost_usd": 0.001,
            "input_tokens": 100,
            "output_tokens": 50,
        },
        {
            **docs_model,
            "ts_start": at(2),
            "latency_ms": 300,
            "cost_usd": 0.003,
            "input_tokens": 200,
            "output_tokens": 70,
        },
        {**docs, "ts_start": at(3), "status": "cached", "cache": "exact", "latency_ms": 5, "cost_usd": 0.0},
        {
            **docs,
            "ts_start": at(3),
            "status": "cached",
            "cache": "semantic",
            "cache_similarity": 0.95,
            "latency_ms": 6,
            "cost_usd": 0.0,
            "key_id": "k2",
        },
        {
            **docs,  # no response: its model is read from the attempt log
            "request_model": "route:docs",
            "attempt_log": '[{"model": "smollm2-135m", "status": "error"}]',
            "cache": "miss",
            "ts_start": at(3),
            "status": "error",
            "error_type": "timeout",
            "latency_ms": 5000,
            "cost_usd": 0.0,
        },
        {**claude, "ts_start": at(2), "latency_ms": 2500, "ttft_ms": 400, "cost_usd": 0.05, "cache": "miss"},
        {
            **claude,
            "ts_start": at(3),
            "status": "partial",
            "error_type": "stream_cut",
            "latency_ms": 1500,
            "cost_usd": 0.02,
            "cache": "miss",
        },
        {
            **support,
            "provider": "openai",
            "tier": "small",
            "response_model": "gpt-4o-mini",
            "ts_start": at(3),
            "latency_ms": 800,
            "cost_usd": 0.01,
            "cache": "miss",
        },
        {**support, "ts_start": at(3), "status": "blocked"},
        {**support, "ts_start": at(4), "status": "over_budget", "cache": "miss"},
        {**support, "ts_start": at(9), "cost_usd": 5.0, "latency_ms": 9000},  # after the window
    )
    return cur


WINDOW = {"from": "2026-03-01", "to": "2026-03-08"}


def keyed(result: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[key] for key in keys): row for row in result}


def test_spend_by_route_daily(traffic: duckdb.DuckDBPyConnection) -> None:
    result = keyed(rows(traffic, "spend_by_route_daily", **WINDOW), "day", "route")
    docs_day_2 = result[(at(2).date(), "docs")]
    assert (docs_day_2["calls"], docs_day_2["input_tokens"], docs_day_2["output_tokens"]) == (2, 300, 120)
    assert docs_day_2["cost_usd"] == pytest.approx(0.004)
    assert result[(at(3).date(), "support")]["calls"] == 3
    assert result[(at(3).date(), "support")]["cost_usd"] == pytest.approx(0.03)
    assert len(result) == 5


def test_error_rate(traffic: duckdb.DuckDBPyConnection) -> None:
    result = keyed(rows(traffic, "error_rate", **WINDOW), "route", "provider")
    local = result[("docs", "local")]
    assert (local["calls"], local["attempted"], local["errors"], local["cached"]) == (5, 3, 1, 2)
    assert local["error_rate"] == pytest.approx(1 / 3)
    assert local["top_error_type"] == "timeout"
    anthropic = result[("support", "anthropic")]
    assert (anthropic["errors"], anthropic["partial"], anthropic["error_rate"]) == (1, 1, 0.5)
    refused = result[("support", None)]
    assert (refused["calls"], refused["blocked"], refused["over_budget"], refused["error_rate"]) == (
        2,
        1,
        1,
        None,
    )
    assert result[("support", "openai")]["error_rate"] == 0


def test_latency_slo(traffic: duckdb.DuckDBPyConnection) -> None:
    docs = keyed(rows(traffic, "latency_slo", **WINDOW), "route")[("docs",)]
    assert docs["calls"] == 3  # cache-served calls are left out
    assert docs["latency_p50_ms"] == pytest.approx(300)
    assert (docs["slo_ms"], docs["over_slo"], docs["over_slo_share"]) == (2000, 1, pytest.approx(1 / 3))
    assert (docs["streamed_calls"], docs["ttft_p95_ms"]) == (1, 20)
    strict = keyed(rows(traffic, "latency_slo", **WINDOW, slo_ms="200"), "route")
    assert strict[("docs",)]["over_slo_share"] == pytest.approx(2 / 3)
    assert strict[("support",)]["over_slo"] == 3


def test_cache_hit_rate(traffic: duckdb.DuckDBPyConnection) -> None:
    result = keyed(rows(traffic, "cache_hit_rate", **WINDOW), "route")
    docs, support = result[("docs",)], result[("support",)]
    assert (docs["lookups"], docs["exact_hits"], docs["semantic_hits"], docs["hit_rate"]) == (5, 1, 1, 0.4)
    assert docs["mean_miss_cost_usd"] == pytest.approx(0.002)
    assert docs["saved_usd_estimate"] == pytest.approx(2 * 0.002)
    assert docs["mean_semantic_similarity"] == pytest.approx(0.95)
    assert (support["lookups"], support["hits"], support["hit_rate"]) == (4, 0, 0)
    assert support["saved_usd_estimate"] == 0


def test_routing_share(traffic: duckdb.DuckDBPyConnection) -> None:
    result = keyed(rows(traffic, "routing_share", **WINDOW), "scope", "workflow_id", "model")
    assert result[("workflow", "docs", "smollm2-135m")]["share"] == 1
    claude = result[("workflow", "support", "claude-sonnet")]
    assert (claude["calls"], claude["small_or_local"]) == (2, False)
    assert claude["share"] == pytest.approx(2 / 3)
    assert claude["small_or_local_share"] == pytest.approx(1 / 3)
    assert result[("workflow", "support", "gpt-4o-mini")]["small_or_local"] is True
    overall = result[("overall", None, "smollm2-135m")]
    assert overall["share"] == pytest.approx(3 / 6)
    assert overall["small_or_local_share"] == pytest.approx(4 / 6)
    assert len(result) == 6


def test_budget_burn(traffic: duckdb.DuckDBPyConnection) -> None:
    result = rows(traffic, "budget_burn", **WINDOW, key_id="k2", route="support")
    days = [(row["day"].day, row["calls"], row["over_budget"]) for row in result]
    assert days == [(2, 1, 0), (3, 3, 0), (4, 1, 1)]
    assert [row["cumulative_spend_usd"] for row in result] == pytest.approx([0.05, 0.08, 0.08])
    everything = rows(traffic, "budget_burn", **WINDOW)
    assert {(row["key_id"], row["route"]) for row in everything} == {
        ("k1", "docs"),
        ("k2", "docs"),
        ("k2", "support"),
    }


@pytest.fixture
def audit(cur: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    cur.executemany(
        "INSERT INTO audit_log (seq, ts, actor, actor_kind, action, subject, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            [1, at(2), "system", "system", "route.update", "docs", None],
            [
                2,
                at(2, 13),
                "alice",
                "human",
                "override",
                "approval:a1",
                '{"reason": "vip", "decision": "granted"}',
            ],
            [3, at(3), "bob", "human", "approval.denied", "approval:a2", '{"task_id": "S1", "wait_s": 42}'],
            [4, at(3, 14), "k1", "key", "override", "route:docs", None],
            [5, at(4), "alice", "human", "keys.create", "k3", None],
            [6, at(9), "alice", "human", "override", "route:docs", None],
        ],
    )
    return cur


def test_audit_trail(audit: duckdb.DuckDBPyConnection) -> None:
    assert [row["seq"] for row in rows(audit, "audit_trail", **WINDOW)] == [1, 2, 3, 4, 5]
    assert [row["seq"] for row in rows(audit, "audit_trail", **WINDOW, action="approval.%")] == [3]
    assert [row["seq"] for row in rows(audit, "audit_trail", **WINDOW, actor="alice")] == [2, 5]
    assert [row["seq"] for row in rows(audit, "audit_trail", **WINDOW, actor_kind="key")] == [4]


def test_overrides(audit: duckdb.DuckDBPyConnection) -> None:
    result = rows(audit, "overrides", **WINDOW)
    assert [(row["seq"], row["kind"], row["decision"], row["reason"]) for row in result] == [
        (2, "override", "granted", "vip"),
        (3, "approval", "denied", None),
    ]
    assert (result[1]["task_id"], result[1]["wait_s"]) == ("S1", 42)
    assert [row["seq"] for row in rows(audit, "overrides", **WINDOW, actor="bob")] == [3]


# --- cost_per_outcome on the shipped sample dataset, against polars -------------------------


def sample_files(table: str) -> list[Path]:
    return sorted(sample_traces_dir().glob(f"{table}*.parquet"))


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """The shipped sample traces, loaded the way users load them (through the importer), once
    for the module: importing 122,630 rows per query was most of this file's time."""
    assert sample_files("traces") and sample_files("outcomes"), f"no sample dataset in {sample_traces_dir()}"
    database = Database(tmp_path_factory.mktemp("sample") / "sample.duckdb")
    import_files(database.cursor(), [sample_traces_dir()])
    yield database
    database.close()


@pytest.fixture
def sample(sample_store: Database) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor on the sample store in a transaction rolled back afterwards: a test sees the
    sample as imported, whatever the one before it ran."""
    cur = sample_store.cursor()
    cur.execute("BEGIN")
    yield cur
    cur.execute("ROLLBACK")


def polars_cost_per_outcome(since: datetime, until: datetime) -> dict[str | None, dict[str, Any]]:
    traces = pl.read_parquet(sample_files("traces")).filter(pl.col("task_id").is_not_null())
    outcomes = pl.read_parquet(sample_files("outcomes")).select(
        "task_id", pl.col("workflow_id").alias("outcome_workflow"), pl.col("status").alias("outcome")
    )
    first_workflow = (
        traces.filter(pl.col("workflow_id").is_not_null() & (pl.col("workflow_id") != JUDGE))
        .sort("ts_start", "request_id")
        .group_by("task_id")
        .agg(pl.col("workflow_id").first().alias("first_workflow"))
    )
    tasks = (
        traces.group_by("task_id")
        .agg(
            pl.col("ts_start").min().alias("first_call_at"),
            pl.col("cost_usd").fill_null(0).sum().alias("cost"),
            pl.len().alias("calls"),
        )
        .filter(pl.col("first_call_at").is_between(since, until, closed="left"))
        .join(first_workflow, on="task_id", how="left")
        .join(outcomes, on="task_id", how="left")
        .with_columns(pl.coalesce("outcome_workflow", "first_workflow").alias("workflow_id"))
    )
    per_workflow = tasks.group_by("workflow_id").agg(
        pl.len().alias("tasks"),
        (pl.col("outcome") == "resolved").sum().alias("resolved_tasks"),
        pl.col("cost").sum().alias("total_cost_usd"),
        pl.col("calls").sum().alias("calls"),
    )
    return {row["workflow_id"]: row for row in per_workflow.iter_rows(named=True)}


def test_cost_per_outcome_on_the_sample_dataset_matches_polars(sample: duckdb.DuckDBPyConnection) -> None:
    since, last = (
        pl.read_parquet(sample_files("traces"))
        .select(pl.col("ts_start").min().alias("first"), pl.col("ts_start").max().alias("last"))
        .row(0)
    )
    until = last + timedelta(seconds=1)
    expected = polars_cost_per_outcome(since, until)
    actual = {
        row["workflow_id"]: row for row in rows(sample, "cost_per_outcome", **{"from": since, "to": until})
    }
    assert expected, "the sample dataset has no tasks"
    assert set(actual) == set(expected)
    for workflow, want in expected.items():
        got = actual[workflow]
        assert (got["tasks"], got["resolved_tasks"], got["calls"]) == (
            want["tasks"],
            want["resolved_tasks"],
            want["calls"],
        ), workflow
        assert got["total_cost_usd"] == pytest.approx(want["total_cost_usd"], rel=1e-9, abs=1e-9), workflow
        per_outcome = want["total_cost_usd"] / want["resolved_tasks"] if want["resolved_tasks"] else None
        assert got["cost_per_outcome_usd"] == pytest.approx(per_outcome, rel=1e-9, abs=1e-9), workflow


@pytest.mark.parametrize("name", NAMES)
def test_every_query_runs_on_the_sample_dataset(sample: duckdb.DuckDBPyConnection, name: str) -> None:
    whole = {"from": "2000-01-01", "to": "2100-01-01"}
    query = queries.load(name)
    queries.run(
        sample, query, {param.name: whole[param.name] for param in query.params if param.name in whole}
    )
