"""A pane: refreshes on a timer only while visible, in a thread worker that never overlaps itself."""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

import duckdb
from textual import work
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable

from console.tui.context import ConsoleContext
from console.tui.readmodel.overview import Opens


class OpenBehind(Message):
    """Show what is behind a number (a tile, a row): its pane, or Traffic with a filter in its field."""

    def __init__(self, opens: Opens) -> None:
        super().__init__()
        self.opens = opens


def traces_of(field: str, value: str | None, since: str) -> Opens | None:
    """Traffic filtered to one workflow, route, model, … over the stretch the number covers."""
    if not value:
        return None
    return Opens("traffic", f"{field}:{shlex.quote(value)} since:{since}")


class Pane(Vertical):
    """Subclasses give `fetch` (runs in a worker thread, reads the store) and `show` (draws)."""

    TITLE: ClassVar[str] = ""
    REFRESH_S: ClassVar[float] = 2.0
    FOCUS: ClassVar[str | None] = None  # the widget that takes focus when the pane is shown

    class Loaded(Message):
        def __init__(self, pane: Pane, data: Any) -> None:
            super().__init__()
            self.pane = pane
            self.data = data

    class Failed(Message):
        def __init__(self, pane: Pane, error: str) -> None:
            super().__init__()
            self.pane = pane
            self.error = error

    def __init__(self, context: ConsoleContext, *, id: str) -> None:
        super().__init__(id=id, classes="pane")
        self.context = context
        self.active = False
        self.loading_now = False
        self.loads = 0  # completed refreshes, for tests and the status line
        self.last_error: str | None = None
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._timer: Timer | None = None
        self._again = False

    @property
    def cursor(self) -> duckdb.DuckDBPyConnection:
        if self._cursor is None:
            self._cursor = self.context.new_cursor()
        return self._cursor

    def on_mount(self) -> None:
        if self.REFRESH_S > 0:
            self._timer = self.set_interval(self.REFRESH_S, self.reload, pause=True)

    def activate(self) -> None:
        """Shown: refresh now and on the timer."""
        self.active = True
        self.call_after_refresh(self.focus_main)
        if self._timer is not None:
            self._timer.resume()
        self.reload()

    def focus_main(self) -> None:
        if self.FOCUS and self.active:
            self.query_one(self.FOCUS).focus()

    def deactivate(self) -> None:
        self.active = False
        if self._timer is not None:
            self._timer.pause()

    def reload(self) -> None:
        """Start a refresh unless one is still running (a slow one is never stacked)."""
        if not self.is_attached:
            return
        if self.loading_now:
            self._again = True  # e.g. a new filter: run once more when this one is done
            return
        self.loading_now = True
        self._load(self.cursor)

    @work(thread=True, exit_on_error=False)
    def _load(self, cursor: duckdb.DuckDBPyConnection) -> None:
        try:
            data = self.fetch(cursor)
        except Exception as exc:
            self.post_message(self.Failed(self, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Loaded(self, data))

    def on_pane_loaded(self, message: Pane.Loaded) -> None:
        if message.pane is not self:
            return
        message.stop()
        self.last_error = None
        self.show(message.data)
        self.loads += 1
        self._done()

    def on_pane_failed(self, message: Pane.Failed) -> None:
        if message.pane is not self:
            return
        message.stop()
        self.last_error = message.error
        self.show_error(message.error)
        self._done()

    def _done(self) -> None:
        self.loading_now = False
        if self._again:
            self._again = False
            self.reload()

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> Any:
        raise NotImplementedError

    def show(self, data: Any) -> None:
        raise NotImplementedError

    def action_toggle_charts(self) -> None:
        """Hide the pane's charts (more room for its tables), or show them again."""
        for row in self.query(".chart-row"):
            row.toggle_class("-hidden")

    def behind(self, table: str, row: int) -> Opens | None:
        """What Enter on row `row` of the pane's table `table` opens (the traces behind it), if any."""
        return None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        opens = self.behind(event.data_table.id or "", event.cursor_row)
        if opens is not None:
            event.stop()
            self.app.post_message(OpenBehind(opens))

    def show_error(self, error: str) -> None:
        self.notify(error, title=f"{self.TITLE}: could not refresh", severity="error", timeout=6)
