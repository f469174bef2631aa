"""Drift: per workflow, the last 7 days against the 28 before (statistics, tests, levels), latest alerts."""

from __future__ import annotations

from typing import ClassVar

import duckdb
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Static

from console.quality.drift import Level, Statistic, value_text
from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane, traces_of
from console.tui.panes.charts import TOGGLE, Chart, ChartRow
from console.tui.panes.tables import Cell, fill, right
from console.tui.readmodel import drift
from console.tui.readmodel.drift import DriftView
from console.tui.readmodel.overview import Opens

COLUMNS = ("workflow", "metric", "component", "baseline", "last 7 d", "change", "test", "score", "")
ALERT_COLUMNS = ("raised (UTC)", "workflow", "metric", "severity", "baseline", "current")
LEVEL_STYLES = {Level.ALERT: "bold red", Level.WARNING: "yellow", Level.OK: "dim", Level.TOO_FEW: "dim"}


def level_text(level: Level) -> Text:
    label = {Level.ALERT: "▲ alert", Level.WARNING: "△ warning"}.get(level, level.value)
    return Text(label, style=LEVEL_STYLES[level])


def score_text(item: Statistic) -> str:
    if item.score is None:
        return "-"
    if item.test == "median day":
        return f"{item.score:+.0%}"
    return f"{item.score:.3g}" if item.test in ("fisher", "ks") else f"{item.score:.3f}"


def rows(view: DriftView) -> list[list[Cell]]:
    found: list[list[Cell]] = []
    previous = None
    for item in view.report.statistics:
        style = LEVEL_STYLES[item.level] if item.level.raises else ""
        metric = item.metric.value
        found.append(
            [
                item.workflow_id if item.workflow_id != previous else "",
                metric.replace("_", " "),
                item.component or "",
                right(value_text(metric, item.baseline)),
                Text(value_text(metric, item.current), style=style, justify="right"),
                Text(humanize.change(item.current, item.baseline), style=style, justify="right"),
                item.test,
                right(score_text(item)),
                level_text(item.level),
            ]
        )
        previous = item.workflow_id
    return found


def alert_rows(view: DriftView) -> list[list[Cell]]:
    return [
        [
            humanize.day_and_time(alert["ts"]),
            humanize.text(alert["workflow_id"]),
            humanize.text(alert["metric"]),
            Text(alert["severity"] or "", style="bold red" if alert["severity"] == "critical" else "yellow"),
            right(value_text(alert["metric"] or "", alert["baseline"])),
            right(value_text(alert["metric"] or "", alert["current"])),
        ]
        for alert in view.recent_alerts
    ]


def headline(view: DriftView) -> str:
    windows = "last 7 days against the 28 before"
    workflows = view.report.workflows()
    if not workflows:
        return "no traffic in the last five weeks"
    raised = view.raised
    if not raised:
        return f"{len(workflows)} workflows, no drift ({windows})"
    names = sorted({item.workflow_id for item in raised})
    alerts = sum(item.level is Level.ALERT for item in raised)
    warnings = len(raised) - alerts
    return f"{alerts} alerts, {warnings} warnings in {', '.join(names)} ({windows})"


class DriftPane(Pane):
    TITLE = "Drift"
    REFRESH_S = 30.0
    FOCUS = "#drift-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "switch_metric", "Latency/tokens"),
        Binding("d", "run_drift", "Run drift now"),
        TOGGLE,
    ]

    class Ran(Message):
        """A drift run the console started is over: what it found, or why it failed."""

        def __init__(self, text: str, failed: bool = False) -> None:
            super().__init__()
            self.text, self.failed = text, failed

    def __init__(self, context: ConsoleContext, *, id: str = "drift") -> None:
        super().__init__(context, id=id)
        self.view: DriftView | None = None
        self.charted: str | None = None  # the workflow the charts show: the highlighted row's
        self.distribution = "latency"  # or "output_tokens": `m` switches

    def compose(self) -> ComposeResult:
        yield Static("", id="drift-headline", classes="pane-status")
        yield ChartRow(
            Chart(id="drift-distribution-chart"), Chart(id="drift-verdicts-chart"), id="drift-charts"
        )
        yield DataTable(id="drift-table", cursor_type="row")
        yield Static("Latest drift alerts", classes="section-title")
        yield DataTable(id="drift-alerts", cursor_type="row")

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> DriftView:
        return drift.snapshot(cursor, self.context.clock())

    def show(self, data: DriftView) -> None:
        status = self.query_one("#drift-headline", Static)
        status.update(headline(data))
        status.set_class(bool(data.raised), "-alert")
        table: DataTable[Cell] = self.query_one("#drift-table", DataTable)
        fill(table, COLUMNS, rows(data))
        alerts: DataTable[Cell] = self.query_one("#drift-alerts", DataTable)
        fill(alerts, ALERT_COLUMNS, alert_rows(data))
        self.view = data
        self.chart(self._highlighted())

    def _highlighted(self) -> str | None:
        """The workflow of the drift table's highlighted row (the first one's before any)."""
        statistics = self.view.report.statistics if self.view else []
        if not statistics:
            return None
        row = self.query_one("#drift-table", DataTable).cursor_row
        return statistics[min(max(row, 0), len(statistics) - 1)].workflow_id

    def chart(self, workflow: str | None) -> None:
        """Both windows of one workflow: a distribution (latency or output tokens) and the verdict mix."""
        found = self.view.charts.get(workflow) if self.view and workflow else None
        if found is None and self.view and self.view.charts:
            workflow, found = next(iter(self.view.charts.items()))
        if found is None:
            return
        self.charted = workflow
        shown = found.latency if self.distribution == "latency" else found.output_tokens
        self.query_one("#drift-distribution-chart", Chart).show(shown)
        self.query_one("#drift-verdicts-chart", Chart).show(found.verdicts)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "drift-table" and self.view is not None:
            self.chart(self._highlighted())

    def action_run_drift(self) -> None:
        """The hourly drift run, now (alerts stored and audited); its progress is in the header."""
        self.notify("drift: running (its progress is in the header)", title="Drift", timeout=4)
        self._run_drift()

    @work(thread=True, exclusive=True, group="drift-run", exit_on_error=False)
    def _run_drift(self) -> None:
        try:
            found = self.context.engine.drift.run(as_of=self.context.clock())
        except Exception as exc:
            self.post_message(self.Ran(f"drift failed: {type(exc).__name__}: {exc}", failed=True))
        else:
            text = f"{len(found.alerts)} alert(s) raised, {len(found.new_alert_ids)} new"
            self.post_message(self.Ran(text + (f" · {found.webhook_error}" if found.webhook_error else "")))

    def on_drift_pane_ran(self, message: DriftPane.Ran) -> None:
        self.notify(message.text, title="Drift", severity="error" if message.failed else "information")
        self.reload()

    def action_switch_metric(self) -> None:
        self.distribution = "output_tokens" if self.distribution == "latency" else "latency"
        self.chart(self.charted)

    def behind(self, table: str, row: int) -> Opens | None:
        """Enter on a statistic or an alert: the workflow's traces of the last 7 days."""
        if self.view is None:
            return None
        if table == "drift-table" and row < len(self.view.report.statistics):
            return traces_of("workflow", self.view.report.statistics[row].workflow_id, "7d")
        if table == "drift-alerts" and row < len(self.view.recent_alerts):
            return traces_of("workflow", self.view.recent_alerts[row]["workflow_id"], "7d")
        return None
