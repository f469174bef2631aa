"""Drift: statistics per workflow on the sample traces, alerts stored once, audited and posted to a webhook.

The sample traces inject quality drift into invoice_parsing from Mon 2026-10-12 09:30
(week 6). The other scripted incidents must not read as drift of another workflow;
the refund agent's runaway loop on Thu 2026-10-01 is the one other change the judge
saw (it marked the looping steps incorrect), so its week raises refund_agent alerts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from gateway_process import REPO, fleetdeck_serve, run_cli

from console.engine import Engine
from console.quality import drift
from console.quality.drift import Level, Metric
from console.settings import Settings
from console.store import rollups, seed

SAMPLE_TABLES = ("traces", "outcomes", "evals", "audit_log")
DRIFT_STARTS = datetime(2026, 10, 12, 9, 30)
RUNAWAY_DAY = datetime(2026, 10, 1)
FIRST_MONDAY = datetime(2026, 9, 7)


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample traces as shipped (dates not rebased) in a store of their own."""
    data_dir = tmp_path_factory.mktemp("drift-sample")
    with Engine(Settings(data_dir=data_dir)) as engine:
        cur = engine.db.cursor()
        for table in SAMPLE_TABLES:
            # The store reads no files (its external access is off): Arrow in, as the importer does.
            cur.register("sample_rows", pq.read_table(str(seed.sample_traces_dir() / f"{table}.parquet")))
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM sample_rows")
            cur.unregister("sample_rows")
        rollups.rebuild(cur)  # inserted past the recorder: the panes' rollups made from them
    return data_dir


@pytest.fixture
def store(sample_store: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(sample_store / "fleetdeck.duckdb", data_dir / "fleetdeck.duckdb")
    return data_dir


@pytest.fixture(scope="module")
def sample_cursor(sample_store: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect(str(sample_store / "fleetdeck.duckdb"), read_only=True)
    yield conn
    conn.close()


def raised_workflows(cur: duckdb.DuckDBPyConnection, as_of: datetime) -> set[str]:
    return {item.workflow_id for item in drift.compute(cur, drift.Windows(as_of)).raised}


# -- acceptance ------------------------------------------------------------------------


def test_the_drift_week_alerts_invoice_parsing_and_no_other_workflow(
    sample_cursor: duckdb.DuckDBPyConnection,
) -> None:
    report = drift.compute(sample_cursor, drift.Windows(datetime(2026, 10, 19)))
    raised = {(item.workflow_id, item.metric, item.component) for item in report.raised}
    assert {item.workflow_id for item in report.raised} == {"invoice_parsing"}
    assert ("invoice_parsing", Metric.SCHEMA_VALID_RATE, "extract_invoice") in raised
    assert ("invoice_parsing", Metric.INCORRECT_RATE, "answer") in raised
    assert ("invoice_parsing", Metric.VERDICT_MIX, None) in raised
    mix = next(item for item in report.raised if item.metric is Metric.VERDICT_MIX)
    assert mix.level is Level.ALERT and mix.score is not None and mix.score >= drift.MIX_ALERT
    # Every other workflow was measured, not skipped for want of data.
    measured = {item.workflow_id for item in report.statistics if item.level is not Level.TOO_FEW}
    assert measured >= {"support_triage", "refund_agent", "internal_doc_summaries", "invoice_parsing"}


def test_every_week_end_is_quiet_but_the_drift_weeks(sample_cursor: duckdb.DuckDBPyConnection) -> None:
    expected = {
        datetime(2026, 10, 5): {"refund_agent"},  # week 4: the runaway loop the judge marked incorrect
        datetime(2026, 10, 19): {"invoice_parsing"},  # week 6: the injected drift
        datetime(2026, 10, 26): {"invoice_parsing"},  # week 7: still drifted against weeks 3-6
    }
    for week in range(1, 9):
        as_of = FIRST_MONDAY + timedelta(weeks=week)
        assert raised_workflows(sample_cursor, as_of) == expected.get(as_of, set()), as_of


def test_no_day_raises_a_workflow_whose_window_holds_no_incident(
    sample_cursor: duckdb.DuckDBPyConnection,
) -> None:
    """Daily windows from week 2 on: refund_agent only around its runaway, invoice only after the drift."""
    as_of = FIRST_MONDAY + timedelta(days=7)
    while as_of <= datetime(2026, 11, 2):
        start = as_of - timedelta(days=drift.WINDOW_DAYS)
        allowed = set()
        if start <= RUNAWAY_DAY < as_of:
            allowed.add("refund_agent")
        if as_of > DRIFT_STARTS:
            allowed.add("invoice_parsing")
        assert raised_workflows(sample_cursor, as_of) <= allowed, as_of
        as_of += timedelta(days=1)
    # ...and the drift is caught within days: the sample's own monitor alerted on Wed 2026-10-14.
    assert "invoice_parsing" in raised_workflows(sample_cursor, datetime(2026, 10, 14, 12))


# -- the statistics on made-up numbers -------------------------------------------------------


def test_verdict_mix_alerts_only_when_it_gets_worse() -> None:
    good = {"correct": 400, "partial": 50, "incorrect": 50}
    bad = {"correct": 60, "partial": 15, "incorrect": 50}
    worse = drift.verdict_mix("w", good, bad)
    better = drift.verdict_mix("w", bad, good)
    assert worse.level is Level.ALERT
    assert better.level is Level.OK
    assert better.score == pytest.approx(drift.verdict_mix("w", good, bad).score, rel=0.5)


def test_verdict_mix_warns_between_the_thresholds_and_needs_enough_verdicts() -> None:
    baseline = {"correct": 800, "partial": 100, "incorrect": 100}
    slightly_worse = {"correct": 130, "partial": 25, "incorrect": 45}
    found = drift.verdict_mix("w", baseline, slightly_worse)
    assert found.score is not None and drift.MIX_WARNING <= found.score < drift.MIX_ALERT
    assert found.level is Level.WARNING
    few = drift.verdict_mix("w", baseline, {"correct": 5, "partial": 5, "incorrect": 15})
    assert few.level is Level.TOO_FEW and few.score is None


def test_psi_matches_its_definition() -> None:
    reference, current = np.array([0.8, 0.1, 0.1]), np.array([0.5, 0.2, 0.3])
    by_hand = sum((c - r) * np.log(c / r) for r, c in zip(reference, current, strict=True))
    assert drift.population_stability_index(reference, current) == pytest.approx(by_hand)
    assert drift.population_stability_index(reference, reference) == 0


def test_rates_alert_on_a_significant_change_for_the_worse_only() -> None:
    valid_fell = drift.rate_change(
        "w", Metric.SCHEMA_VALID_RATE, "r", (970, 1000), (830, 1000), worse_when_higher=False
    )
    valid_rose = drift.rate_change(
        "w", Metric.SCHEMA_VALID_RATE, "r", (830, 1000), (970, 1000), worse_when_higher=False
    )
    noise = drift.rate_change("w", Metric.INCORRECT_RATE, "a", (40, 400), (13, 100), worse_when_higher=True)
    assert valid_fell.level is Level.ALERT
    assert valid_rose.level is Level.OK
    assert noise.change is not None and noise.change > drift.RATE_CHANGE  # +30 %, from 100 verdicts
    assert noise.level is Level.OK


def test_small_baselines_use_ks_and_large_ones_normalised_wasserstein() -> None:
    rng = np.random.default_rng(7)
    small = drift.distribution_shift(
        "w", Metric.LATENCY_MS, rng.lognormal(7, 0.5, 500), rng.lognormal(7.5, 0.5, 200), either_way=False
    )
    assert small.test == "ks" and small.level is Level.WARNING
    baseline, shifted = rng.lognormal(7, 0.5, 5000), rng.lognormal(7.5, 0.5, 1500)
    large = drift.distribution_shift("w", Metric.LATENCY_MS, baseline, shifted, either_way=False)
    assert large.test == "wasserstein" and large.level is Level.WARNING
    assert large.score == pytest.approx(wasserstein_by_definition(baseline, shifted) / np.std(baseline))
    faster = drift.distribution_shift("w", Metric.LATENCY_MS, shifted, baseline, either_way=False)
    assert faster.level is Level.OK  # latency that fell is no alert


def wasserstein_by_definition(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """W1 = the area between the two empirical CDFs."""
    points = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), points[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), points[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(points)))


def test_cost_per_outcome_alerts_on_a_lasting_rise_not_a_fall_or_one_day() -> None:
    def days(cost: float, count: int, spike: float | None = None) -> list[dict[str, Any]]:
        found = [
            {"resolved_tasks": 50, "cost_per_outcome_usd": cost * (1 + 0.01 * (n % 3))} for n in range(count)
        ]
        if spike is not None:
            found[0]["cost_per_outcome_usd"] = spike
        return found

    rose = drift.cost_change("w", days(1.0, 28), days(1.3, 7))
    fell = drift.cost_change("w", days(1.3, 28), days(1.0, 7))
    one_day = drift.cost_change("w", days(1.0, 28), days(1.0, 7, spike=9.0))
    short_baseline = drift.cost_change("w", days(1.0, 8), days(1.3, 7))
    assert rose.level is Level.ALERT
    assert fell.level is Level.OK
    assert one_day.level is Level.OK
    assert short_baseline.level is Level.TOO_FEW


def test_an_alert_is_raised_once_per_window_slot() -> None:
    monday = drift.Windows(datetime(2026, 10, 19))
    later_that_week = drift.Windows(datetime(2026, 10, 18, 15))
    next_week = drift.Windows(datetime(2026, 10, 19, 1))
    assert monday.slot() == later_that_week.slot() == datetime(2026, 10, 12).date()
    assert next_week.slot() == datetime(2026, 10, 19).date()


# -- the command, the store, the audit log and the webhook ---------------------------------------


class Webhook:
    """A real HTTP server on 127.0.0.1 that keeps what is POSTed to it, answering `status`."""

    def __init__(self, status: int = 204) -> None:
        self.received: list[dict[str, Any]] = []
        received, answer = self.received, status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "type": self.headers["Content-Type"], **json.loads(body)})
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/s3cr3t-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`fleetdeck drift --format json ARGS` with extra environment."""
    return subprocess.run(
        [sys.executable, "-m", "console", "drift", "--format", "json", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def drift_json(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    found = cli(data_dir, *args, env=env)
    assert found.returncode == 0, found.stderr
    doc: dict[str, Any] = json.loads(found.stdout)
    return doc


def stored(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with Engine(Settings(data_dir=data_dir)) as engine:
        return engine.db.cursor().execute(sql).fetchall()


def test_drift_command_stores_each_alert_once_and_audits_it(store: Path) -> None:
    first = drift_json(store, "--as-of", "2026-10-19")
    again = drift_json(store, "--as-of", "2026-10-18T20:00")  # same week, same alerts
    alerts = first["alerts"]
    assert alerts and {alert["workflow_id"] for alert in alerts} == {"invoice_parsing"}
    assert all(alert["new"] for alert in alerts)
    assert {alert["alert_id"] for alert in again["alerts"] if not alert["new"]} >= {
        alert["alert_id"] for alert in alerts
    }
    rows = stored(store, "SELECT alert_id, kind, workflow_id, metric, severity FROM alerts ORDER BY alert_id")
    assert sorted(row[0] for row in rows) == sorted(
        {alert["alert_id"] for alert in alerts} | {alert["alert_id"] for alert in again["alerts"]}
    )
    assert {row[1] for row in rows} == {"drift"}
    audited = stored(
        store,
        "SELECT payload->>'alert_id', actor, actor_kind, subject FROM audit_log "
        "WHERE action = 'alert.raised' AND payload->>'alert_id' IS NOT NULL",
    )
    assert sorted(row[0] for row in audited) == sorted(row[0] for row in rows)
    assert {row[1:] for row in audited} == {("fleetdeck:drift", "system", "workflow:invoice_parsing")}
    verified = run_cli(store, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    listed = run_cli(store, "query", "--name", "drift_alerts", "--format", "json")
    latest = [(row["alert_id"], row["source"]) for row in json.loads(listed.stdout)]
    # Stored alerts once each (their audit entries are not listed again), and the sample's own audited one.
    assert sorted(latest) == sorted([(row[0], "alerts") for row in rows] + [(latest[-1][0], "audit_log")])


def test_drift_command_prints_a_table_and_filters_by_workflow(store: Path) -> None:
    found = run_cli(store, "drift", "--as-of", "2026-10-19", "--workflow", "support_triage")
    assert found.returncode == 0, found.stderr
    assert "support_triage" in found.stdout and "schema_valid_rate" in found.stdout
    assert "invoice_parsing" not in found.stdout
    assert "No alerts." in found.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--as-of", "last tuesday"), "--as-of 'last tuesday': expected an ISO date"),
        (("--format", "xml"), "--format 'xml': expected table or json"),
    ],
)
def test_bad_drift_options_exit_2_naming_the_problem(
    store: Path, args: tuple[str, ...], message: str
) -> None:
    found = run_cli(store, "drift", *args)
    assert found.returncode == 2
    assert message in found.stderr


def test_alerts_are_posted_to_the_webhook(store: Path) -> None:
    with Webhook() as hook:
        doc = drift_json(store, "--as-of", "2026-10-19", env={"FLEETDECK_DRIFT_WEBHOOK_URL": hook.url})
    assert doc["webhook_error"] is None
    assert len(hook.received) == 1
    posted = hook.received[0]
    assert posted["type"] == "application/json" and posted["kind"] == "drift"
    assert [alert["alert_id"] for alert in posted["alerts"]] == [alert["alert_id"] for alert in doc["alerts"]]


def test_a_webhook_answering_an_error_keeps_the_alerts_and_says_so(store: Path) -> None:
    with Webhook(status=500) as hook:
        found = cli(store, "--as-of", "2026-10-19", env={"FLEETDECK_DRIFT_WEBHOOK_URL": hook.url})
    assert found.returncode == 0, found.stderr
    assert "drift webhook http://127.0.0.1:" in found.stderr and "answered HTTP 500" in found.stderr
    assert "s3cr3t-token" not in found.stderr + found.stdout  # a webhook's path may hold a secret
    assert len(stored(store, "SELECT * FROM alerts")) == len(json.loads(found.stdout)["alerts"]) > 0


def test_an_unreachable_webhook_keeps_the_alerts_and_says_so(store: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    found = cli(
        store, "--as-of", "2026-10-19", env={"FLEETDECK_DRIFT_WEBHOOK_URL": f"http://127.0.0.1:{port}/x"}
    )
    assert found.returncode == 0, found.stderr
    assert f"drift webhook http://127.0.0.1:{port} failed (ConnectError" in found.stderr
    assert "the alerts are stored" in found.stderr
    assert len(stored(store, "SELECT * FROM alerts")) == len(json.loads(found.stdout)["alerts"]) > 0


def test_rebased_sample_is_quiet_now_and_alerts_in_its_drift_week(tmp_path: Path) -> None:
    data_dir = tmp_path / "rebased"
    imported = run_cli(data_dir, "import", str(seed.sample_traces_dir()), "--rebase-to-now")
    assert imported.returncode == 0, imported.stderr
    now = drift_json(data_dir)
    assert now["alerts"] == []  # the last week against the four before it (weeks 4-7) holds no new drift
    (latest,) = stored(data_dir, "SELECT max(ts_start) FROM traces")[0]
    with duckdb.connect() as conn:
        (shipped,) = conn.execute(
            "SELECT max(ts_start) FROM read_parquet(?)", [str(seed.sample_traces_dir() / "traces.parquet")]
        ).fetchall()[0]
    drift_week_end = datetime(2026, 10, 19) + (latest - shipped)
    doc = drift_json(data_dir, "--as-of", drift_week_end.isoformat())
    assert {alert["workflow_id"] for alert in doc["alerts"]} == {"invoice_parsing"}


def up_to_the_drift_week(tmp_path: Path) -> Path:
    """The sample cut at the end of week 6, so that a rebased import's last week is the drift week."""
    folder = tmp_path / "cut"
    folder.mkdir()
    cut = "TIMESTAMP '2026-10-19'"
    with duckdb.connect() as conn:
        for table, column in (("traces", "ts_end"), ("evals", "ts"), ("outcomes", "ts")):
            source = seed.sample_traces_dir() / f"{table}.parquet"
            conn.execute(
                f"COPY (SELECT * FROM read_parquet('{source}') WHERE {column} < {cut}) "
                f"TO '{folder / f'{table}.parquet'}' (FORMAT parquet)"
            )
    return folder


def test_a_serving_instance_runs_drift_itself_and_the_command_asks_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "served"
    imported = run_cli(data_dir, "import", str(up_to_the_drift_week(tmp_path)), "--rebase-to-now")
    assert imported.returncode == 0, imported.stderr
    with Webhook() as hook:
        env = {"FLEETDECK_DRIFT_INTERVAL_S": "0.5", "FLEETDECK_DRIFT_WEBHOOK_URL": hook.url}
        with fleetdeck_serve(data_dir, env=env):
            for _ in range(600):
                if hook.received:
                    break
                threading.Event().wait(0.05)
            doc = drift_json(data_dir)  # through the instance's admin API
    assert hook.received, "the instance's monitor posted nothing"
    posted = {alert["alert_id"] for alert in hook.received[0]["alerts"]}
    assert {alert["workflow_id"] for alert in hook.received[0]["alerts"]} == {"invoice_parsing"}
    assert posted <= {alert["alert_id"] for alert in doc["alerts"] if not alert["new"]}
    assert len(hook.received) == 1  # later runs of the same week raise nothing new
    audited = stored(data_dir, "SELECT count(*) FROM audit_log WHERE actor = 'fleetdeck:drift'")
    assert audited == [(len(posted),)]
