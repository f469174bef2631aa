"""The scorecard against polars computations straight from the sample Parquet files, and its renderings."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from gateway_process import fleetdeck_serve
from typer.testing import CliRunner

from console import cli
from console.gateway import admin
from console.policy import Policy, load_policy
from console.reports import render_csv, render_html, render_json, render_md
from console.reports import scorecard as sc
from console.reports.period import Window, resolve
from console.store import queries, rollups
from console.store.db import Database
from console.store.importer import import_files
from console.store.seed import sample_traces_dir

ROOT = Path(__file__).resolve().parents[1]
CURRENT = Window(datetime(2026, 10, 3), datetime(2026, 11, 2))
JUDGE = "fleetdeck-judge"
ATTEMPTED = ["ok", "partial", "error"]
CHROMIUM = Path("/usr/bin/chromium")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(tmp_path_factory.mktemp("scorecard") / "f.duckdb")
    import_files(database.cursor(), [sample_traces_dir()])
    yield database
    database.close()


def runner_of(database: Database) -> sc.QueryRunner:
    cursor = database.cursor()
    return lambda name, params: queries.run(cursor, name, params)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(ROOT / "examples" / "routes.yaml")


@pytest.fixture(scope="module")
def card(store: Database, policy: Policy) -> sc.Scorecard:
    options = sc.Options(CURRENT, policy=policy, policy_source="examples/routes.yaml")
    return sc.build(runner_of(store), options, now=datetime(2026, 11, 2))


@pytest.fixture(scope="module")
def parquet() -> dict[str, pl.DataFrame]:
    names = ("traces", "outcomes", "evals", "audit_log")
    return {name: pl.read_parquet(sample_traces_dir() / f"{name}.parquet") for name in names}


# --------------------------------------------------------------------------- polars, independently


def in_window(frame: pl.DataFrame, column: str, window: Window) -> pl.DataFrame:
    return frame.filter((pl.col(column) >= window.start) & (pl.col(column) < window.end))


def expected_traffic(traces: pl.DataFrame, window: Window) -> dict[str, dict[str, float | None]]:
    calls = in_window(traces, "ts_start", window)
    miss = (
        calls.filter((pl.col("status") == "ok") & (pl.col("cache").fill_null("miss") == "miss"))
        .group_by("route")
        .agg(pl.col("cost_usd").mean().alias("miss_cost"))
    )
    calls = calls.join(miss, on="route", how="left", nulls_equal=True)
    figures: dict[str, dict[str, float | None]] = {}
    for (workflow,), group in calls.group_by("workflow_id"):
        attempted = group.filter(pl.col("status").is_in(ATTEMPTED))
        errors = group.filter(pl.col("status").is_in(["error", "partial"])).height
        hits = group.filter(pl.col("cache").is_in(["exact", "semantic"]))
        lookups = group.filter(pl.col("cache").is_not_null()).height
        figures[str(workflow)] = {
            "spend_usd": group["cost_usd"].fill_null(0).sum(),
            "error_rate": errors / attempted.height if attempted.height else None,
            "cache_hit_rate": hits.height / lookups if lookups else None,
            "cache_saved_usd": hits["miss_cost"].fill_null(0).sum(),
            "small_or_local_share": (
                attempted.filter(
                    pl.col("tier").is_in(["small", "local"]) | (pl.col("provider") == "local")
                ).height
                / attempted.height
                if attempted.height
                else None
            ),
        }
    return figures


def expected_cost_per_outcome(
    traces: pl.DataFrame, outcomes: pl.DataFrame, window: Window
) -> dict[str, float]:
    first_workflow = (
        traces.filter(pl.col("workflow_id").is_not_null() & (pl.col("workflow_id") != JUDGE))
        .sort("ts_start", "request_id")
        .group_by("task_id", maintain_order=True)
        .agg(pl.col("workflow_id").first().alias("first_wf"))
    )
    tasks = traces.group_by("task_id").agg(
        pl.col("ts_start").min().alias("first"), pl.col("cost_usd").fill_null(0).sum().alias("cost")
    )
    tasks = tasks.join(first_workflow, on="task_id", how="left")
    cohort = in_window(tasks, "first", window).join(outcomes, on="task_id", how="left")
    cohort = cohort.with_columns(pl.coalesce("workflow_id", "first_wf").alias("wf"))
    result = {}
    for (workflow,), group in cohort.group_by("wf"):
        resolved = group.filter(pl.col("status") == "resolved").height
        if resolved:
            result[str(workflow)] = group["cost"].sum() / resolved
    return result


def expected_worst_p95(traces: pl.DataFrame, window: Window, workflow: str) -> float:
    attempted = in_window(traces, "ts_start", window).filter(pl.col("status").is_in(ATTEMPTED))
    routes = attempted.filter(pl.col("workflow_id") == workflow)["route"].unique().to_list()
    p95 = [
        attempted.filter(pl.col("route") == route)["latency_ms"].quantile(0.95, interpolation="linear")
        for route in routes
    ]
    return max(value for value in p95 if value is not None)


def judged(parquet: dict[str, pl.DataFrame], window: Window) -> pl.DataFrame:
    calls = in_window(parquet["traces"], "ts_start", window).select("request_id", "workflow_id")
    return parquet["evals"].join(calls, on="request_id")


def expected_incidents(parquet: dict[str, pl.DataFrame], window: Window) -> dict[int, set[str]]:
    """audit seq -> workflows touched, from the subject, as the query header defines it."""
    calls = in_window(parquet["traces"], "ts_start", window).filter(pl.col("workflow_id").is_not_null())
    events = in_window(parquet["audit_log"], "ts", window).filter(
        pl.col("action").is_in(["breaker.opened", "budget.breach", "route.stopped", "alert.raised"])
    )
    touched: dict[int, set[str]] = {}
    for event in events.iter_rows(named=True):
        kind, _, name = event["subject"].partition(":")
        if kind in ("workflow", "route", "key"):
            column = {"workflow": "workflow_id", "route": "route", "key": "key_id"}[kind]
            hit = calls.filter(pl.col(column) == name)
        else:
            same_day = calls.filter(pl.col("ts_start").dt.date() == event["ts"].date())
            keep = [
                any(name in (a["model"], a["provider"]) for a in json.loads(log or "[]"))
                for log in same_day["attempt_log"]
            ]
            hit = same_day.filter(pl.Series(keep, dtype=pl.Boolean))
        touched[event["seq"]] = set(hit["workflow_id"].unique().to_list())
    return touched


def approx(value: float | None) -> Any:
    return None if value is None else pytest.approx(value, rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- figures against polars


@pytest.mark.parametrize("period", ["current", "previous"])
def test_traffic_figures_equal_polars(
    card: sc.Scorecard, parquet: dict[str, pl.DataFrame], period: str
) -> None:
    window = CURRENT if period == "current" else CURRENT.before()
    expected = expected_traffic(parquet["traces"], window)
    for workflow in card.workflows:
        for name, value in expected[workflow].items():
            figure = card.figure(workflow, name)
            assert (figure.value if period == "current" else figure.previous) == approx(value), (
                workflow,
                name,
            )


def test_overall_traffic_figures_equal_polars(card: sc.Scorecard, parquet: dict[str, pl.DataFrame]) -> None:
    calls = in_window(parquet["traces"], "ts_start", CURRENT)
    attempted = calls.filter(pl.col("status").is_in(ATTEMPTED))
    errors = calls.filter(pl.col("status").is_in(["error", "partial"])).height
    assert card.figure(sc.OVERALL, "spend_usd").value == approx(calls["cost_usd"].fill_null(0).sum())
    assert card.figure(sc.OVERALL, "error_rate").value == approx(errors / attempted.height)


def test_cost_per_outcome_equals_polars(card: sc.Scorecard, parquet: dict[str, pl.DataFrame]) -> None:
    for window, pick in ((CURRENT, "value"), (CURRENT.before(), "previous")):
        expected = expected_cost_per_outcome(parquet["traces"], parquet["outcomes"], window)
        for workflow in card.workflows:
            figure = card.figure(workflow, "cost_per_outcome_usd")
            assert getattr(figure, pick) == approx(expected.get(workflow)), workflow


def test_latency_is_the_slowest_route_against_the_default_slo(
    card: sc.Scorecard, parquet: dict[str, pl.DataFrame]
) -> None:
    for workflow in card.workflows:
        figure = card.figure(workflow, "latency_p95_ms")
        # latency_slo reads its percentiles from histogram buckets at most 10 % wide
        expected = expected_worst_p95(parquet["traces"], CURRENT, workflow)
        assert figure.value == pytest.approx(expected, rel=0.10)
        assert figure.detail["slo_ms"] == 2000
        assert figure.status == (
            "green" if figure.value <= 2000 else "amber" if figure.value <= 2500 else "red"
        )


def test_quality_and_policy_figures_equal_polars(
    card: sc.Scorecard, parquet: dict[str, pl.DataFrame]
) -> None:
    evals = judged(parquet, CURRENT)
    for workflow in card.workflows:
        mine = evals.filter(pl.col("workflow_id") == workflow)
        incorrect = mine.filter(pl.col("verdict") == "incorrect")
        share = incorrect.height / mine.height if mine.height else None
        assert card.figure(workflow, "judge_incorrect_share").value == approx(share)
        critical = incorrect.filter(pl.col("component") == "policy_compliance").height
        assert card.figure(workflow, "critical_policy_violations").value == critical
        assert card.figure(workflow, "critical_policy_violations").status == ("red" if critical else "green")


def test_trace_completeness_equals_polars(card: sc.Scorecard, parquet: dict[str, pl.DataFrame]) -> None:
    calls = in_window(parquet["traces"], "ts_start", CURRENT)
    attempted = pl.col("status").is_in(ATTEMPTED)
    full = calls.filter(
        pl.col("ts_end").is_not_null()
        & pl.col("http_status").is_not_null()
        & pl.col("latency_ms").is_not_null()
        & (
            ~attempted
            | (
                pl.col("provider").is_not_null()
                & (
                    pl.col("attempt_log").map_elements(
                        lambda log: len(json.loads(log)), return_dtype=pl.Int64
                    )
                    > 0
                )
            )
        )
        & (
            ~pl.col("status").is_in(["ok", "partial"])
            | (pl.col("response_model").is_not_null() & pl.col("cost_usd").is_not_null())
        )
    )
    known = set(parquet["traces"]["request_id"])
    referenced = set(calls["parent_id"].drop_nulls()) | set(
        in_window(parquet["evals"], "ts", CURRENT)["request_id"]
    )
    seen = calls.height + len(referenced - known)
    figure = card.figure(sc.OVERALL, "trace_completeness")
    assert figure.value == approx(full.height / seen)
    assert figure.status == ("green" if full.height / seen > 0.99 else "amber")


def test_incidents_per_workflow_equal_polars(card: sc.Scorecard, parquet: dict[str, pl.DataFrame]) -> None:
    touched = expected_incidents(parquet, CURRENT)
    for workflow in card.workflows:
        expected = sum(1 for workflows in touched.values() if workflow in workflows)
        assert card.figure(workflow, "incidents").value == expected, workflow
    assert card.figure(sc.OVERALL, "incidents").value == len(touched)
    for incident in (i for i in card.incidents if i.period == "current"):
        assert set(incident.workflows) == touched[incident.seq]


def test_spend_against_the_policy_caps(
    card: sc.Scorecard, parquet: dict[str, pl.DataFrame], policy: Policy
) -> None:
    calls = in_window(parquet["traces"], "ts_start", CURRENT)
    for workflow in card.workflows:
        mine = calls.filter(pl.col("workflow_id") == workflow)
        routes = set(mine["route"].unique())
        caps = [route.max_budget_daily for route in policy.routes if route.intent in routes]
        shared = calls.filter(pl.col("route").is_in(list(routes)))["workflow_id"].n_unique() > 1
        figure = card.figure(workflow, "budget_used")
        if len(caps) < len(routes) or None in caps or shared:
            assert figure.value is None and figure.status == "n/a"
            continue
        budget = sum(cap for cap in caps if cap is not None) * CURRENT.days
        assert figure.value == approx(mine["cost_usd"].fill_null(0).sum() / budget)


def test_no_caps_means_no_budget_set(store: Database) -> None:
    card = sc.build(runner_of(store), sc.Options(CURRENT, policy=None), now=CURRENT.end)
    figure = card.figure(sc.OVERALL, "budget_used")
    assert figure.value is None and figure.status == "n/a" and "No budget set" in figure.reading


def test_key_caps_are_budgets(tmp_path: Path) -> None:
    database = Database(tmp_path / "k.duckdb")
    cur = database.cursor()
    cur.execute(
        "INSERT INTO virtual_keys (key_id, name, environment, key_hash, key_hint, daily_cap, created_at) "
        "VALUES ('k1', 'backfill', 'prod', 'h', 'abcd', 10, TIMESTAMP '2026-03-02 07:00')"
    )
    cur.execute(
        "INSERT INTO traces (request_id, ts_start, status, key_id, cost_usd, workflow_id) "
        "VALUES ('r1', TIMESTAMP '2026-03-02 08:00', 'ok', 'k1', 9.5, 'w')"
    )
    rollups.rebuild(cur)  # rows written past the recorder
    window = Window(datetime(2026, 3, 1), datetime(2026, 3, 4))
    card = sc.build(runner_of(database), sc.Options(window), now=window.end)
    database.close()
    (line,) = card.budgets
    assert line.scope == "key:backfill" and line.budget_usd == 10 * 2  # created on the 2nd: the 2nd and 3rd
    assert line.spend_usd == 9.5 and line.status == "amber"


def test_missing_and_incomplete_traces_lower_completeness(tmp_path: Path) -> None:
    database = Database(tmp_path / "c.duckdb")
    cur = database.cursor()
    rows = [  # full; full child of a parent never recorded; incomplete (no ts_end)
        ("a", None, "2026-03-02 08:00:01", "[{}]"),
        ("b", "gone", "2026-03-02 08:00:01", "[{}]"),
        ("c", None, None, "[{}]"),
    ]
    for request_id, parent, ts_end, log in rows:
        cur.execute(
            "INSERT INTO traces (request_id, parent_id, ts_start, ts_end, status, http_status, latency_ms, "
            "provider, attempt_log, response_model, cost_usd, workflow_id) "
            "VALUES (?, ?, TIMESTAMP '2026-03-02 08:00', ?, 'ok', 200, 5, 'p', ?, 'p/m', 0.1, 'w')",
            [request_id, parent, ts_end, log],
        )
    rollups.rebuild(cur)
    window = Window(datetime(2026, 3, 1), datetime(2026, 3, 4))
    card = sc.build(runner_of(database), sc.Options(window), now=window.end)
    database.close()
    figure = card.figure("w", "trace_completeness")
    assert figure.value == pytest.approx(2 / 4)
    assert figure.detail == {"requests_seen": 4, "full_traces": 2}
    assert figure.status == "red"


# --------------------------------------------------------------------------- scenarios as incidents


@pytest.mark.parametrize(
    ("week_start", "kind", "workflow"),
    [
        ("2026-09-21", "breaker_ejection", "support_triage"),  # week 3: provider outage
        ("2026-09-28", "route_stop", "refund_agent"),  # week 4: runaway agent loop
        ("2026-10-12", "drift_alert", "invoice_parsing"),  # week 6: quality drift
        ("2026-10-19", "budget_breach", "invoice_parsing"),  # week 7: budget breach
    ],
)
def test_each_scenario_is_an_incident_of_its_week(
    store: Database, week_start: str, kind: str, workflow: str
) -> None:
    window = resolve("7d", None, (datetime.fromisoformat(week_start) + timedelta(days=7)).isoformat())
    card = sc.build(runner_of(store), sc.Options(window), now=window.end)
    current = [i for i in card.incidents if i.period == "current" and i.kind == kind]
    assert current and all(window.start <= i.ts < window.end for i in current)
    assert any(workflow in i.workflows for i in current)
    assert not any(i.kind == kind for i in card.incidents if i.period == "previous")
    assert card.figure(workflow, "incidents").status in ("amber", "red")


def test_thirty_day_periods_split_the_scenarios(card: sc.Scorecard) -> None:
    kinds = {
        period: {i.kind for i in card.incidents if i.period == period} for period in ("current", "previous")
    }
    assert {"drift_alert", "budget_breach"} <= kinds["current"]
    assert {"breaker_ejection", "route_stop"} <= kinds["previous"]
    assert not {"breaker_ejection", "route_stop"} & kinds["current"]


def test_workflow_filter_limits_every_figure(store: Database, card: sc.Scorecard) -> None:
    only = sc.build(runner_of(store), sc.Options(CURRENT, workflows=("refund_agent",)), now=CURRENT.end)
    assert only.workflows == ("refund_agent",)
    for name in ("spend_usd", "error_rate", "cost_per_outcome_usd", "judge_incorrect_share"):
        assert only.figure(sc.OVERALL, name).value == approx(card.figure("refund_agent", name).value)
    assert all("refund_agent" in i.workflows for i in only.incidents)


# --------------------------------------------------------------------------- renderings


def check_schema(instance: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> None:
    """The subset of JSON Schema that docs/scorecard.schema.json uses."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    types = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "null": type(None),
    }
    kinds = schema.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else kinds
        assert any(isinstance(instance, types[k]) for k in allowed), f"{where}: {instance!r} is not {kinds}"
    assert "enum" not in schema or instance in schema["enum"], f"{where}: {instance!r}"
    assert "const" not in schema or instance == schema["const"], where
    if isinstance(instance, dict):
        assert set(schema.get("required", ())) <= set(instance), where
        if schema.get("additionalProperties") is False:
            assert set(instance) <= set(schema["properties"]), (
                f"{where}: {set(instance) - set(schema['properties'])}"
            )
        for key, value in instance.items():
            if key in schema.get("properties", {}):
                check_schema(value, schema["properties"][key], root, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for n, item in enumerate(instance):
            check_schema(item, schema["items"], root, f"{where}[{n}]")


def test_json_follows_the_documented_schema(card: sc.Scorecard) -> None:
    schema = json.loads((ROOT / "docs" / "scorecard.schema.json").read_text())
    document = json.loads(render_json.render(card))
    check_schema(document, schema, schema)
    assert len(document["figures"]) == len(card.figures)


def test_csv_has_one_row_per_workflow_and_figure(card: sc.Scorecard) -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv.render(card))))
    pairs = [(row["workflow"], row["figure"]) for row in rows]
    assert len(pairs) == len(set(pairs)) == (len(card.workflows) + 1) * 12
    spend = next(r for r in rows if r["workflow"] == "refund_agent" and r["figure"] == "spend_usd")
    assert float(spend["value"]) == approx(card.figure("refund_agent", "spend_usd").value)


def test_markdown_has_every_section_and_aligned_tables(card: sc.Scorecard) -> None:
    text = render_md.render(card)
    for heading in (
        "## Overall",
        "## Status by workflow",
        "## Incidents",
        "## Spend against budget",
        "## Targets",
    ):
        assert heading in text
    for workflow in card.workflows:
        assert f"## Workflow `{workflow}`" in text
    for block in text.split("\n\n"):
        table = [line for line in block.splitlines() if line.startswith("|")]
        assert len({len(line) for line in table}) <= 1, table[:2]


SECTIONS = (
    "Summary",
    "Status by workflow",
    "Cost",
    "Spend against budget",
    "Routing and cache",
    "Reliability",
    "Incidents",
    "Quality",
    "Trace completeness",
    "Workflows in detail",
    "Targets",
)


def test_html_is_self_contained_with_every_section_and_chart(card: sc.Scorecard) -> None:
    html = render_html.render(card)
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "@import" not in html and "@media print" in html
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in html
    assert html.count("<svg") == 8


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_chromium_renders_the_html(card: sc.Scorecard, tmp_path: Path) -> None:
    page = tmp_path / "scorecard.html"
    page.write_text(render_html.render(card), encoding="utf-8")
    shot = tmp_path / "scorecard.png"
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    subprocess.run(
        [*base, "--window-size=1100,6000", f"--screenshot={shot}", page.as_uri()],
        check=True,
        capture_output=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(
        [*base, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True
    ).stdout
    assert all(f"<h2>{section}</h2>" in dom for section in SECTIONS)
    assert dom.count("<svg") == 8


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    database = Database(folder / "fleetdeck.duckdb")
    import_files(database.cursor(), [sample_traces_dir()])
    database.close()
    return folder


def test_cli_without_an_instance_writes_each_format(data_dir: Path, tmp_path: Path) -> None:
    for fmt in ("html", "md", "json", "csv"):
        out = tmp_path / f"card.{fmt}"
        args = ["scorecard", "--to", "2026-11-02", "--out", str(out), "--data-dir", str(data_dir)]
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 1000
    document = json.loads((tmp_path / "card.json").read_text())
    assert document["period"] == {"from": "2026-10-03T00:00:00", "to": "2026-11-02T00:00:00", "days": 30.0}


def test_cli_through_the_admin_api_gives_the_same_figures(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    owned = tmp_path / "data"
    shutil.copytree(data_dir, owned)
    args = ["scorecard", "--to", "2026-11-02", "--format", "csv", "--data-dir", str(owned)]
    asked: list[str] = []
    over_http = admin.AdminEndpoint.query

    def query(self: admin.AdminEndpoint, request: dict[str, Any], timeout_s: float = 300) -> Any:
        asked.append(request["name"])  # noted, then sent to the instance as the CLI would
        return over_http(self, request, timeout_s)

    monkeypatch.setattr(admin.AdminEndpoint, "query", query)
    with fleetdeck_serve(owned):  # publishes its admin endpoint (URL, token) in the data dir
        with pytest.raises(duckdb.IOException):  # the instance owns the file: no way in but its API
            duckdb.connect(str(owned / "fleetdeck.duckdb"), read_only=True)
        result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    direct = tmp_path / "direct.csv"  # the same store, opened by the CLI itself once the instance stopped
    assert CliRunner().invoke(cli.app, [*args, "--out", str(direct)]).exit_code == 0
    through_api = list(csv.DictReader(io.StringIO(result.output)))
    opened = list(csv.DictReader(io.StringIO(direct.read_text())))
    assert len(through_api) == len(opened)
    for mine, theirs in zip(through_api, opened, strict=True):
        for column in ("value", "previous"):
            assert (float(mine[column]) if mine[column] else None) == approx(
                float(theirs[column]) if theirs[column] else None
            )
        assert {k: v for k, v in mine.items() if k not in ("value", "previous")} == {
            k: v for k, v in theirs.items() if k not in ("value", "previous")
        }
    assert {"scorecard_traffic", "cost_per_outcome", "scorecard_incidents"} <= set(asked)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "soon"], "expected a length"),
        (["--from", "2026-10-10", "--to", "2026-10-01"], "the period is empty"),
        (["--format", "pdf"], "expected html, md, json or csv"),
        (["--slo", "triage_ticket"], "route=milliseconds"),
    ],
)
def test_cli_refuses_bad_options_with_exit_2(data_dir: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli.app, ["scorecard", *args, "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert message in result.output


def test_direct_store_errors_are_reported(tmp_path: Path) -> None:
    with pytest.raises(duckdb.Error):
        queries.run(duckdb.connect(), "scorecard_traffic", {})
