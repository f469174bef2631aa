"""Enter on a row of Cost, Fleet or Drift opens the traces behind it: Traffic, the filter in its field."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from console.engine import Engine
from console.tui.panes.traffic import TrafficPane

from .conftest import drive, loaded, offline_app, show, until

CASES = [
    ("4", "cost", "#cost-workflows", "workflow:", "since:30d"),
    ("4", "cost", "#cost-routes", "route:", "since:30d"),
    ("3", "fleet", "#fleet-models", "model:", "since:1h"),
    ("5", "drift", "#drift-table", "workflow:", "since:7d"),
]


@pytest.mark.parametrize(("key", "pane_id", "table_id", "field", "since"), CASES)
def test_enter_on_a_row_opens_its_traces(
    console_engine: Engine, key: str, pane_id: str, table_id: str, field: str, since: str
) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await show(pilot, key, pane_id)
        await loaded(pilot, pane)
        table = app.query_one(table_id, DataTable)
        assert table.row_count > 0
        table.focus()
        await pilot.press("enter")
        traffic = app.query_one(TrafficPane)
        await until(pilot, lambda: app.active_pane is traffic, "Traffic")
        typed = app.query_one("#traffic-filter", Input).value
        assert typed.startswith(field) and typed.endswith(since)
        value = typed.removeprefix(field).removesuffix(since).strip()
        await loaded(pilot, traffic, after=traffic.loads)
        await until(pilot, lambda: bool(traffic.stream.rows), "the traces behind the row")
        column = {"workflow:": "workflow_id", "route:": "route", "model:": "model"}[field]
        assert {getattr(row, column) for row in traffic.stream.rows} == {value}

    drive(app, scenario)
