"""SVG snapshots of every pane over the sample store with the clock frozen (pytest-textual-snapshot).

Update them after a deliberate change of the look with `pytest tests/tui --snapshot-update`
and review the SVGs in tests/tui/__snapshots__/.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TextArea

from console.engine import Engine
from console.tui.app import FleetdeckApp
from console.tui.panes.sql import SqlPane, result_status
from console.tui.readmodel import sql as sql_core

from .conftest import SIZE, loaded, offline_app, show, until

PANES = [("2", "traffic"), ("3", "fleet"), ("4", "cost"), ("5", "drift"), ("6", "audit")]


async def settle(pilot: Pilot[None]) -> None:
    for widget in pilot.app.query(Input):
        widget.cursor_blink = False
    for area in pilot.app.query(TextArea):
        area.cursor_blink = False
    # Tables size their columns on idle: wait until no width changes between two looks.
    widths = None
    for _ in range(60):
        await pilot.pause(0.1)
        tables = [t for t in pilot.app.query(DataTable) if isinstance(t, DataTable)]  # not fastdatatable's
        now = [[c.get_render_width(t) for c in t.columns.values()] for t in tables]
        if now == widths:
            break
        widths = now
    await pilot.wait_for_scheduled_animations()


def ready_on(key: str, pane_id: str) -> Any:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetdeckApp)
        await until(pilot, lambda: app.ready, "the console")
        pane = await show(pilot, key, pane_id)
        await loaded(pilot, pane)
        # Once more now that the pane is on screen: a first fill while hidden can size columns narrow.
        loads = pane.loads
        pane.reload()
        await loaded(pilot, pane, after=loads)
        await settle(pilot)

    return run_before


@pytest.mark.parametrize(("key", "pane_id"), PANES)
def test_pane(snap_compare: Any, console_engine: Engine, key: str, pane_id: str) -> None:
    assert snap_compare(offline_app(console_engine), run_before=ready_on(key, pane_id), terminal_size=SIZE)


@pytest.mark.parametrize("size", [(80, 24), (180, 48)], ids=["80x24", "180x48"])
def test_overview(snap_compare: Any, console_engine: Engine, size: tuple[int, int]) -> None:
    """The first pane, at the smallest terminal the console is for and at a roomy one."""
    assert snap_compare(offline_app(console_engine), run_before=ready_on("1", "overview"), terminal_size=size)


# The SQL pane lists queries/: the snapshot sees a fixed few, so a new query file changes nothing
# here (the other panes still find every query they run).
SNAPSHOT_QUERIES = ("cost_per_outcome", "error_rate", "latency_slo", "spend_by_route_daily")


def test_sql_pane_after_a_query(
    snap_compare: Any, console_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = [query for query in sql_core.saved_queries() if query.name in SNAPSHOT_QUERIES]
    monkeypatch.setattr(sql_core, "saved_queries", lambda: listed)

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetdeckApp)
        await until(pilot, lambda: app.ready, "the console")
        pane = await show(pilot, "7", "sql")
        assert isinstance(pane, SqlPane)
        await until(pilot, lambda: pane.catalog is not None, "the catalog")
        pane.editor.load_text(
            "SELECT workflow_id, status, count(*) AS calls\nFROM traces\nGROUP BY ALL\nORDER BY ALL"
        )
        await pilot.press("ctrl+j")
        await until(pilot, lambda: pane.result is not None and not pane.running, "the query")
        assert pane.result is not None
        pane.status(result_status(replace(pane.result, elapsed_s=0.0)))  # the one wall-clock number
        await settle(pilot)

    assert snap_compare(offline_app(console_engine), run_before=run_before, terminal_size=SIZE)


def test_playground_without_a_gateway(snap_compare: Any, console_engine: Engine) -> None:
    assert snap_compare(
        offline_app(console_engine), run_before=ready_on_static("8", "playground"), terminal_size=SIZE
    )


def ready_on_static(key: str, pane_id: str) -> Any:
    """For panes that do not refresh on a timer: shown, then settled."""

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetdeckApp)
        await until(pilot, lambda: app.ready, "the console")
        await show(pilot, key, pane_id)
        await pilot.pause(0.2)
        await settle(pilot)

    return run_before


def test_trace_detail(snap_compare: Any, console_engine: Engine) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetdeckApp)
        await until(pilot, lambda: app.ready, "the console")
        traffic = await show(pilot, "2", "traffic")
        await loaded(pilot, traffic)
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: getattr(app.screen, "detail", None) is not None, "the trace")
        await settle(pilot)

    assert snap_compare(offline_app(console_engine), run_before=run_before, terminal_size=SIZE)
