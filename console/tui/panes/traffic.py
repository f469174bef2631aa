"""Traffic: the live request stream, filters, and Enter for one trace in full."""

from __future__ import annotations

from typing import ClassVar

import duckdb
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane
from console.tui.panes.stream import TraceStream
from console.tui.readmodel import traffic
from console.tui.readmodel.traffic import FilterError, StreamRow, TrafficFilter
from console.tui.screens.trace import TraceScreen


class TrafficPane(Pane):
    TITLE = "Traffic"
    REFRESH_S = 0.5
    FOCUS = "#traffic-stream"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self, context: ConsoleContext, *, id: str = "traffic") -> None:
        super().__init__(context, id=id)
        self.filter = TrafficFilter()
        self.filter_problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder=f"filter: {traffic.FILTER_HELP}", id="traffic-filter")
        yield Static("", id="traffic-summary", classes="pane-status")
        yield TraceStream(id="traffic-stream")

    @property
    def stream(self) -> TraceStream:
        return self.query_one(TraceStream)

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> list[StreamRow]:
        return traffic.recent(cursor, self.filter, traffic.STREAM_CAP, self.context.clock())

    def show(self, data: list[StreamRow]) -> None:
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
