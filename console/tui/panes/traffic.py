"""Traffic: the live request stream, filters, and Enter for one trace in full.

Pushed, the stream takes each flush's stored traces as they are (filtered here, merged
newest first) and queries only for a new filter, the hour's charts and the slow timer;
rows pushed while a query runs are merged into its answer, so none is lost to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import duckdb
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from console.store.flushed import Flushed
from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane
from console.tui.panes.charts import TOGGLE, Chart, ChartRow
from console.tui.panes.stream import TraceStream
from console.tui.readmodel import charts, traffic
from console.tui.readmodel.charts import TrafficCharts
from console.tui.readmodel.traffic import FilterError, StreamRow, TrafficFilter
from console.tui.screens.trace import TraceScreen

CHARTS_REFRESH_S = 5.0  # the stream refreshes every REFRESH_S (or by push); the charts this often


@dataclass(frozen=True)
class TrafficData:
    rows: list[StreamRow]
    charts: TrafficCharts | None  # None: not charted this time (the last ones stand)


class TrafficPane(Pane):
    TITLE = "Traffic"
    REFRESH_S = 0.5
    IDLE_S = CHARTS_REFRESH_S
    WATCHES = frozenset()  # a flush's traces are appended, never re-queried
    FOCUS = "#traffic-stream"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        TOGGLE,
    ]

    def __init__(self, context: ConsoleContext, *, id: str = "traffic") -> None:
        super().__init__(context, id=id)
        self.filter = TrafficFilter()
        self.filter_problem: str | None = None
        self._charted: tuple[TrafficFilter, float] | None = None  # the filter charted, and when
        self._pushed_meanwhile: list[StreamRow] = []  # rows pushed since the running query began
        self.pushes = 0  # flushes whose traces were taken into the stream, for tests and the bench

    def compose(self) -> ComposeResult:
        yield Input(placeholder=f"filter: {traffic.FILTER_HELP}", id="traffic-filter")
        yield Static("", id="traffic-summary", classes="pane-status")
        yield ChartRow(Chart(id="traffic-load-chart"), Chart(id="traffic-latency-chart"), id="traffic-charts")
        yield TraceStream(id="traffic-stream")

    @property
    def stream(self) -> TraceStream:
        return self.query_one(TraceStream)

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> TrafficData:
        flt, now = self.filter, self.context.clock()
        rows = traffic.recent(cursor, flt, traffic.STREAM_CAP, now)
        return TrafficData(rows, self._charts(cursor, flt, now))

    def _charts(
        self, cursor: duckdb.DuckDBPyConnection, flt: TrafficFilter, now: datetime
    ) -> TrafficCharts | None:
        """The hour's charts, when the filter changed or CHARTS_REFRESH_S have passed (in the worker)."""
        moment = time.monotonic()
        if self._charted is not None:
            charted, at = self._charted
            if charted == flt and moment - at < CHARTS_REFRESH_S:
                return None
        self._charted = (flt, moment)
        timeline = charts.traffic_timeline(cursor, flt.params(traffic.STREAM_CAP), now)
        return charts.traffic_charts(timeline, now, flt.describe())

    def flushed(self, flushed: Flushed) -> None:
        """A flush's stored traces: those that pass the filter go on top, no query."""
        if flushed.traces is None or not flushed.trace_count:
            return
        if not self.active:
            return  # shown again, the pane queries anyway
        rows = traffic.pushed(flushed.traces, self.filter, traffic.STREAM_CAP, self.context.clock())
        self.pushes += 1
        if not rows:
            return
        if self.loading_now:
            self._pushed_meanwhile.extend(rows)
        self.show_rows(traffic.merged(self.stream.rows, rows))

    def load_started(self) -> None:
        self._pushed_meanwhile = []

    def show(self, data: TrafficData) -> None:
        if data.charts is not None:
            self.query_one("#traffic-load-chart", Chart).show(data.charts.load)
            self.query_one("#traffic-latency-chart", Chart).show(data.charts.latency)
        rows = data.rows
        if self._pushed_meanwhile:  # stored after the query's snapshot: not in its answer
            rows, self._pushed_meanwhile = traffic.merged(rows, self._pushed_meanwhile), []
        self.show_rows(rows)

    def show_rows(self, data: list[StreamRow]) -> None:
        self.stream.set_rows(data)
        errors = sum(row.status in ("error", "partial") for row in data)
        cost = sum(row.cost_usd or 0 for row in data)
        capped = " (newest, capped)" if len(data) >= traffic.STREAM_CAP else ""
        self._summary(
            f"{self.filter.describe()} · {humanize.count(len(data))} traces{capped} · "
            f"{humanize.count(errors)} errors · {humanize.usd(cost)} · Enter opens a trace"
        )

    def _summary(self, text: str) -> None:
        """The status line; a problem with the typed filter stays in front until it is fixed."""
        summary = self.query_one("#traffic-summary", Static)
        summary.set_class(self.filter_problem is not None, "-error")
        summary.update(self.filter_problem or text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "traffic-filter":
            return
        event.stop()
        self.apply_filter(event.value)
        self.stream.focus()

    def apply_filter(self, typed: str) -> bool:
        """Use the typed filter; a bad one is shown and the old one stays."""
        try:
            self.filter = TrafficFilter.parse(typed)
        except FilterError as exc:
            self.filter_problem = f"{exc} · the filter in use: {self.filter.describe()}"
            self._summary("")
            return False
        self.filter_problem = None
        self.reload()
        return True

    def show_filter(self, typed: str) -> None:
        """Filter by what another pane asks (a tile's traces): typed in the field, where it can be edited."""
        self.query_one("#traffic-filter", Input).value = typed
        self.apply_filter(typed)

    def on_trace_stream_opened(self, message: TraceStream.Opened) -> None:
        message.stop()
        self.app.push_screen(TraceScreen(self.context, message.request_id))

    def action_focus_filter(self) -> None:
        self.query_one("#traffic-filter", Input).focus()

    def action_clear_filter(self) -> None:
        self.query_one("#traffic-filter", Input).value = ""
        self.apply_filter("")
        self.stream.focus()
