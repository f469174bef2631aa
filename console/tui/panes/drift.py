"""Drift: per workflow, the last week's quality metrics against the four weeks before, alerts highlighted."""

from __future__ import annotations

import duckdb
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.core import drift
from console.tui.core.drift import Reading, WorkflowDrift
from console.tui.panes.base import Pane
from console.tui.panes.tables import Cell, fill, right

COLUMNS = ("workflow", "metric", "baseline", "last 7 d", "change", "")


def value(reading: Reading, number: float | None) -> str:
    if reading.metric.kind == "share":
        return humanize.percent(number)
    if reading.metric.kind == "ms":
        return humanize.duration_ms(number)
    return humanize.count(number)


def rows(workflows: list[WorkflowDrift]) -> list[list[Cell]]:
    found: list[list[Cell]] = []
    for item in workflows:
        name = item.workflow_id or "(no workflow)"
        for reading in item.readings:
            if reading.current is None and reading.baseline is None:
                continue
            style = "bold red" if reading.drifted else ""
            found.append(
                [
                    name,
                    reading.metric.name,
                    right(value(reading, reading.baseline)),
                    Text(value(reading, reading.current), style=style, justify="right"),
                    Text(humanize.change(reading.current, reading.baseline), style=style, justify="right"),
                    Text("▲ drift", style=style) if reading.drifted else Text("ok", style="dim"),
                ]
            )
            name = ""
    return found


def headline(workflows: list[WorkflowDrift]) -> str:
    alerts = [(item, reading) for item in workflows for reading in item.alerts]
    if not workflows:
        return "no traffic in the last five weeks"
    if not alerts:
        return f"{len(workflows)} workflows, no metric drifted (last 7 days against the 28 before)"
    names = sorted({item.workflow_id or "(no workflow)" for item, _ in alerts})
    return f"{len(alerts)} alerts in {', '.join(names)} (last 7 days against the 28 before)"


class DriftPane(Pane):
    TITLE = "Drift"
    REFRESH_S = 10.0
    FOCUS = "#drift-table"

    def __init__(self, context: ConsoleContext, *, id: str = "drift") -> None:
        super().__init__(context, id=id)

    def compose(self) -> ComposeResult:
        yield Static("", id="drift-headline", classes="pane-status")
        yield DataTable(id="drift-table", cursor_type="row")

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> list[WorkflowDrift]:
        return drift.snapshot(cursor, self.context.clock())

    def show(self, data: list[WorkflowDrift]) -> None:
        status = self.query_one("#drift-headline", Static)
        status.update(headline(data))
        status.set_class(any(item.alerts for item in data), "-alert")
        table: DataTable[Cell] = self.query_one("#drift-table", DataTable)
        fill(table, COLUMNS, rows(data))
