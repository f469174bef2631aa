"""Each pane driven through the keyboard, headless, over the sample store and the real Engine."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Markdown, Static

from console.engine import Engine
from console.store.trace import Trace
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.base import Pane
from console.tui.panes.stream import TraceStream
from console.tui.readmodel import cost
from console.tui.readmodel.clock import frozen
from console.tui.readmodel.overview import THRESHOLDS
from console.tui.screens.help import HelpScreen
from console.tui.screens.trace import TraceScreen

from .conftest import drive, loaded, offline_app, show, show_traffic, until


def text_of(app: FleetdeckApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def pane(app: FleetdeckApp, pane_id: str) -> Pane:
    return app.query_one(f"#{pane_id}", Pane)


def test_number_keys_switch_panes_and_only_the_shown_pane_refreshes(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        overview = pane(app, "overview")
        assert app.active_pane is overview
        await loaded(pilot, overview)
        assert [p.id for p in app.query(Pane)] == ["overview"], "a pane never shown was composed"
        panes = [
            ("2", "traffic"),
            ("3", "fleet"),
            ("4", "cost"),
            ("5", "drift"),
            ("6", "audit"),
            ("1", "overview"),
        ]
        for key, pane_id in panes:
            shown = await show(pilot, key, pane_id)
            assert app.active_pane is shown
            await loaded(pilot, shown)
            assert [p.id for p in app.query(Pane) if p.active] == [pane_id]
        traffic = pane(app, "traffic")
        await show(pilot, "3", "fleet")
        before = traffic.loads
        await loaded(pilot, pane(app, "fleet"), after=pane(app, "fleet").loads)
        await pilot.pause(1.0)
        assert traffic.loads == before, "a hidden pane went on refreshing"

    drive(app, scenario)


def test_traffic_lists_the_newest_traces_first(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    newest = (
        console_engine.db.cursor()
        .execute("SELECT request_id FROM traces ORDER BY ts_start DESC, request_id DESC LIMIT 1")
        .fetchone()
    )

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show_traffic(pilot))
        stream = app.query_one(TraceStream)
        assert len(stream.rows) == 1000
        assert newest is not None and stream.rows[0].request_id == newest[0]
        assert "1,000 traces (newest, capped)" in text_of(app, "#traffic-summary")

    drive(app, scenario)


def test_traffic_filters_and_refuses_an_unknown_field(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    errors = (
        console_engine.db.cursor().execute("SELECT count(*) FROM traces WHERE status = 'error'").fetchone()
    )

    async def scenario(pilot: Pilot[None]) -> None:
        traffic = await show_traffic(pilot)
        await loaded(pilot, traffic)
        await pilot.press("slash")
        await pilot.press(*"status:error", "enter")
        await until(pilot, lambda: all(r.status == "error" for r in traffic.stream.rows), "the filter")
        assert errors is not None and len(traffic.stream.rows) == errors[0]
        assert "status=error" in text_of(app, "#traffic-summary")
        await pilot.press("slash")
        app.query_one("#traffic-filter").value = "colour:red"  # type: ignore[attr-defined]
        await pilot.press("enter")
        assert "no field 'colour'" in text_of(app, "#traffic-summary")
        assert traffic.filter.fields == {"status": "error"}, "a bad filter replaced the good one"
        await pilot.press("escape")
        await until(pilot, lambda: len(traffic.stream.rows) == 1000, "the cleared filter")

    drive(app, scenario)


def test_enter_opens_the_trace_with_its_attempts_and_guards(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        traffic = await show_traffic(pilot)
        await loaded(pilot, traffic)
        traffic.apply_filter("status:error")
        await until(pilot, lambda: bool(traffic.stream.rows) and traffic.stream.rows[0].status == "error")
        chosen = traffic.stream.rows[1]
        traffic.stream.focus()
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, TraceScreen) and app.screen.detail is not None)
        screen = app.screen
        assert isinstance(screen, TraceScreen) and screen.request_id == chosen.request_id
        assert chosen.request_id in text_of(app, "#trace-summary")
        attempts = text_of(app, "#trace-attempts")
        assert chosen.error_type is not None and chosen.error_type in attempts
        assert "injection" in text_of(app, "#trace-guards")
        assert text_of(app, "#trace-request") == "no payload kept"
        await pilot.press("escape")
        assert not isinstance(app.screen, TraceScreen)

    drive(app, scenario)


def test_a_new_trace_appears_at_the_top_of_traffic(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    console_engine.start_recorder()

    async def scenario(pilot: Pilot[None]) -> None:
        traffic = await show_traffic(pilot)
        await loaded(pilot, traffic)
        trace = Trace(workflow_id="curl", route="general", provider="local", status="ok", latency_ms=42.0)
        console_engine.recorder.record(trace)
        await until(pilot, lambda: traffic.stream.rows[0].request_id == trace.request_id, "the new trace")
        assert traffic.stream.rows[0].workflow_id == "curl"

    drive(app, scenario)


def test_fleet_shows_each_model_of_the_last_hour(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "3", "fleet"))
        models = app.query_one("#fleet-models", DataTable)
        assert models.row_count >= 1
        assert "gateway not running" in text_of(app, "#fleet-gateway")

    drive(app, scenario)


def test_cost_shows_every_workflow_and_route(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "4", "cost"))
        workflows = app.query_one("#cost-workflows", DataTable)
        names = {str(workflows.get_row_at(i)[0]) for i in range(workflows.row_count)}
        assert names >= {"invoice_parsing", "support_triage", "internal_doc_summaries", "refund_agent"}
        assert app.query_one("#cost-routes", DataTable).row_count == 6
        assert "small or local models" in text_of(app, "#cost-headline")

    drive(app, scenario)


def test_drift_is_quiet_in_the_last_week_and_lists_the_sample_drift_alert(console_engine: Engine) -> None:
    """At the frozen clock the last week is measured against weeks 4-7, which hold the drift already."""
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "5", "drift"))
        assert "4 workflows, no drift" in text_of(app, "#drift-headline")
        assert not app.query_one("#drift-headline").has_class("-alert")
        assert app.query_one("#drift-table", DataTable).row_count > 20
        alerts = app.query_one("#drift-alerts", DataTable)
        assert alerts.row_count == 1  # the sample's own alert.raised (kind drift) of Wed 2026-10-14
        assert "invoice_parsing" in str(alerts.get_row_at(0))

    drive(app, scenario)


def test_drift_in_the_drift_week_highlights_invoice_parsing(console_engine: Engine) -> None:
    app = FleetdeckApp(
        console_engine, ConsoleOptions(seed=False, gateway=False, clock=frozen(datetime(2026, 10, 19)))
    )

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "5", "drift"))
        headline = text_of(app, "#drift-headline")
        assert "in invoice_parsing (" in headline and "alerts" in headline
        assert app.query_one("#drift-headline").has_class("-alert")
        table = app.query_one("#drift-table", DataTable)
        flagged = [
            str(table.get_row_at(n)) for n in range(table.row_count) if "▲ alert" in str(table.get_row_at(n))
        ]
        assert flagged and all(
            "schema valid rate" in row
            or "incorrect rate" in row
            or "verdict mix" in row
            or "cost per outcome" in row
            for row in flagged
        )

    drive(app, scenario)


def test_audit_shows_the_chain_and_the_overrides(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "6", "audit"))
        assert "chain links intact" in text_of(app, "#audit-chain")
        assert app.query_one("#audit-overrides", DataTable).row_count > 0
        assert app.query_one("#audit-events", DataTable).row_count > 0

    drive(app, scenario)


def test_a_verdict_is_overridden_from_the_audit_pane(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    (request_id,) = console_engine.db.cursor().execute("SELECT min(request_id) FROM traces").fetchall()[0]

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "6", "audit"))
        app.query_one("#audit-events", DataTable).focus()
        await pilot.press("o")
        await until(pilot, lambda: bool(app.screen.query("#override-request")), "the override dialog")
        for field, value in (("request", request_id), ("verdict", "maybe"), ("reason", "wrong refund")):
            app.screen.query_one(f"#override-{field}", Input).value = value
        app.screen.query_one("#override-reason", Input).focus()
        await pilot.press("enter")  # Enter submits (a click may land on a notification)
        problem = app.screen.query_one("#override-problem", Static)
        assert "correct, partial or incorrect" in str(problem.render())
        app.screen.query_one("#override-verdict", Input).value = "incorrect"
        await pilot.press("enter")
        await until(pilot, lambda: not app.screen.query("#override-request"), "the dialog to close")

    drive(app, scenario)
    console_engine.recorder.flush()
    rows = (
        console_engine.db.cursor()
        .execute("SELECT actor FROM audit_log WHERE action = 'override' AND subject = ?", [request_id])
        .fetchall()
    )
    assert len(rows) == 1 and rows[0][0].startswith("console:")


def test_command_palette_and_help(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await pilot.press("ctrl+p")
        await pilot.press(*"Audit")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.active_pane.id == "audit", "the palette to switch panes")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        source = app.screen.query_one(Markdown).source
        assert "| `1` | Overview |" in source and "| `8` | Playground |" in source
        assert all(line in source for line in THRESHOLDS.lines())  # the Overview's, from their one place
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

    drive(app, scenario)


def test_traffic_keeps_up_with_a_burst_and_stays_capped(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    console_engine.start_recorder()

    async def scenario(pilot: Pilot[None]) -> None:
        traffic = await show_traffic(pilot)
        await loaded(pilot, traffic)
        burst = [
            Trace(workflow_id="burst", route="general", status="ok", latency_ms=5.0) for _ in range(3000)
        ]
        for trace in burst:
            console_engine.recorder.record(trace)
        newest = max(burst, key=lambda t: (t.ts_start, t.request_id))
        await until(pilot, lambda: traffic.stream.rows[0].request_id == newest.request_id, "the burst")
        assert len(traffic.stream.rows) == 1000
        assert all(row.workflow_id == "burst" for row in traffic.stream.rows)

    drive(app, scenario)


def test_a_failed_refresh_is_shown_and_the_next_one_recovers(
    console_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = offline_app(console_engine)
    real = cost.snapshot
    failures = iter([True])

    def flaky(cursor: duckdb.DuckDBPyConnection, now: datetime) -> cost.CostView:
        if next(failures, False):
            raise duckdb.IOException("disk went away")
        return real(cursor, now)

    monkeypatch.setattr(cost, "snapshot", flaky)

    async def scenario(pilot: Pilot[None]) -> None:
        shown = await show(pilot, "4", "cost")
        await until(pilot, lambda: shown.last_error is not None, "the failure")
        assert any("could not refresh" in str(n.title) for n in app._notifications)
        assert "disk went away" in (shown.last_error or "")
        shown.reload()
        await until(pilot, lambda: shown.last_error is None and shown.loads == 1, "the recovery")

    drive(app, scenario)
