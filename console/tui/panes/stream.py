"""The request stream: a Line API widget that draws only the visible rows, so thousands cost nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.tui import humanize
from console.tui.readmodel.traffic import StreamRow

COLUMNS: tuple[tuple[str, int], ...] = (
    ("time", 9),
    ("workflow", 19),
    ("route → model", 42),
    ("reason", 20),
    ("status", 12),
    ("latency", 10),
    ("tokens", 12),
    ("cost", 10),
)
RIGHT_ALIGNED = {"latency", "tokens", "cost"}
WIDTH = sum(width for _, width in COLUMNS)


def cells(row: StreamRow) -> list[str]:
    model = row.model or "–"
    where = f"{row.route or '–'} → {model}" if row.route or row.model else f"({row.operation or '–'})"
    tokens = f"{humanize.compact(row.input_tokens)}→{humanize.compact(row.output_tokens)}"
    status = row.status if not row.error_type else f"{row.status}:{row.error_type}"
    return [
        humanize.clock(row.ts_start),
        row.workflow_id or "–",
        where,
        row.reason_code or "–",
        status,
        humanize.duration_ms(row.latency_ms),
        tokens,
        humanize.usd(row.cost_usd),
    ]


def _fit(text: str, width: int, right: bool) -> str:
    room = width - 1
    if len(text) > room:
        text = text[: room - 1] + "…"
    return (text.rjust(room) if right else text.ljust(room)) + " "


class TraceStream(ScrollView, can_focus=True):
    """Rows newest first; the cursor follows its trace when new rows arrive above it, unless it
    is on the newest row: then it stays there, and new rows come into view (a live tail)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "trace-stream--header",
        "trace-stream--cursor",
        "trace-stream--error",
        "trace-stream--blocked",
        "trace-stream--cached",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "move(-20)", "Page up", show=False),
        Binding("pagedown", "move(20)", "Page down", show=False),
        Binding("home", "top", "Newest", show=False),
        Binding("enter", "open", "Open trace"),
    ]
    cursor_row: reactive[int] = reactive(0)

    class Opened(Message):
        def __init__(self, request_id: str) -> None:
            super().__init__()
            self.request_id = request_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[StreamRow] = []

    def set_rows(self, rows: Sequence[StreamRow]) -> None:
        """New rows; the cursor stays on its trace, or on the newest if it was there (a followed tail)."""
        following = self.cursor_row == 0
        current = self.rows[self.cursor_row].request_id if self.rows and not following else None
        self.rows = list(rows)
        self.virtual_size = Size(WIDTH, len(self.rows) + 1)
        index = next((i for i, r in enumerate(self.rows) if r.request_id == current), 0)
        self.cursor_row = min(index, max(len(self.rows) - 1, 0))
        self.refresh()

    @property
    def selected(self) -> StreamRow | None:
        return self.rows[self.cursor_row] if self.rows else None

    def watch_cursor_row(self, old: int, new: int) -> None:
        top = self.scroll_offset.y
        visible = max(self.size.height - 1, 1)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + visible:
            self.scroll_to(y=new - visible + 1, animate=False)
        self.refresh()

    def action_move(self, delta: int) -> None:
        if self.rows:
            self.cursor_row = max(0, min(len(self.rows) - 1, self.cursor_row + delta))

    def action_top(self) -> None:
        self.cursor_row = 0

    def action_open(self) -> None:
        if self.selected is not None:
            self.post_message(self.Opened(self.selected.request_id))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            style = self.get_component_rich_style("trace-stream--header")
            text = "".join(_fit(name, w, name in RIGHT_ALIGNED) for name, w in COLUMNS)
            return self._strip(text, style, scroll_x, width)
        index = scroll_y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        row = self.rows[index]
        text = "".join(
            _fit(cell, w, name in RIGHT_ALIGNED) for cell, (name, w) in zip(cells(row), COLUMNS, strict=True)
        )
        return self._strip(text, self._row_style(row, index), scroll_x, width)

    def _row_style(self, row: StreamRow, index: int) -> Style:
        style = self.rich_style
        if row.status in ("error", "partial"):
            style += self.get_component_rich_style("trace-stream--error")
        elif row.status in ("blocked", "over_budget"):
            style += self.get_component_rich_style("trace-stream--blocked")
        elif row.status == "cached":
            style += self.get_component_rich_style("trace-stream--cached")
        if index == self.cursor_row and self.has_focus:
            style += self.get_component_rich_style("trace-stream--cursor")
        return style

    def _strip(self, text: str, style: Style, scroll_x: int, width: int) -> Strip:
        strip = Strip([Segment(text, style)])
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, style)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
