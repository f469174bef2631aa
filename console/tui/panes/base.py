"""A pane: refreshes only while visible, in a thread worker that never overlaps itself.

How a pane learns that the store changed depends on who writes it:

- pushed (the console's own gateway records the calls, `ConsoleContext.pushed`): the app
  hands every pane each flush the recorder reports (`flushed`). A pane whose tables it
  touched is stale and re-queries, at most once every `STALE_MIN_S`; Traffic takes the
  stored rows themselves and queries nothing. A slow timer (`IDLE_S`) still re-queries
  what no flush reports: windows moving with the clock, imports, purges, live gateway state.
- polled (no gateway records in this process: the gateway off, `fleetdeck lake attach`, or
  `ConsoleOptions(push=False)`): the timer of `REFRESH_S`, as before.
"""

from __future__ import annotations

import shlex
import time
from typing import Any, ClassVar

import duckdb
from textual import work
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable

from console.store.flushed import Flushed
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


STALE_MIN_S = 1.0  # a stale pane re-queries at most this often
ALL_TABLES = frozenset({"traces", "payloads", "outcomes", "evals", "stored_responses", "audit"})


class Pane(Vertical):
    """Subclasses give `fetch` (runs in a worker thread, reads the store) and `show` (draws)."""

    TITLE: ClassVar[str] = ""
    REFRESH_S: ClassVar[float] = 2.0  # the poll when nothing pushes; 0: on demand only
    IDLE_S: ClassVar[float] = 10.0  # with pushes: the slow re-query of what no flush reports
    WATCHES: ClassVar[frozenset[str]] = ALL_TABLES  # a flush storing rows of these makes it stale
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

    class Drawn(Message):
        """The pane, shown, drew its first refresh (or its error): for the console's start (app.py)."""

    def __init__(self, context: ConsoleContext, *, id: str) -> None:
        super().__init__(id=id, classes="pane")
        self.context = context
        self.active = False
        self.loading_now = False
        self.loads = 0  # completed refreshes, for tests and the status line
        self.drawn = False  # a refresh was shown while the pane was (Drawn)
        self.last_error: str | None = None
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._timer: Timer | None = None
        self._again = False
        self.stale = False  # a flush stored what the pane shows since its last query began
        self._stale_timer: Timer | None = None
        self._started = float("-inf")  # time.monotonic() of the last query's start

    @property
    def cursor(self) -> duckdb.DuckDBPyConnection:
        if self._cursor is None:
            self._cursor = self.context.new_cursor()
        return self._cursor

    def on_mount(self) -> None:
        """The timer starts at the first activation, once the console knows whether it is pushed."""

    @property
    def poll_s(self) -> float:
        """The timer's period: REFRESH_S when polled, the slower IDLE_S when pushed; 0: none."""
        if self.REFRESH_S <= 0:
            return 0.0
        return max(self.REFRESH_S, self.IDLE_S) if self.context.pushed else self.REFRESH_S

    def activate(self) -> None:
        """Shown: refresh now and on the timer."""
        self.active = True
        self.call_after_refresh(self.focus_main)
        if self._timer is None and self.poll_s > 0:
            self._timer = self.set_interval(self.poll_s, self.reload)
        elif self._timer is not None:
            self._timer.resume()
        self.reload()

    def retime(self) -> None:
        """The console's push changed: the timer again, at the period that now applies."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
            if self.active and self.poll_s > 0:
                self._timer = self.set_interval(self.poll_s, self.reload)

    def focus_main(self) -> None:
        if self.FOCUS and self.active:
            self.query_one(self.FOCUS).focus()

    def deactivate(self) -> None:
        self.active = False
        if self._timer is not None:
            self._timer.pause()
        self._cancel_stale_timer()

    def flushed(self, flushed: Flushed) -> None:
        """The recorder stored a flush (on the UI thread): stale if it touched what is shown,
        unless the last query began after the flush's commit (its answer has the rows)."""
        if flushed.at > self._started and flushed.touches(self.WATCHES):
            self.mark_stale()

    def mark_stale(self) -> None:
        """Re-query soon: now, or STALE_MIN_S after the last query began; hidden, when shown."""
        self.stale = True
        if self.active:
            self._requery_soon()

    def _requery_soon(self) -> None:
        if self.loading_now or self._stale_timer is not None:
            return  # _done() or the timer looks again
        wait = self._started + STALE_MIN_S - time.monotonic()
        if wait <= 0:
            self.reload()
        else:
            self._stale_timer = self.set_timer(wait, self._stale_due)

    def _stale_due(self) -> None:
        self._stale_timer = None
        if self.stale and self.active:
            self.reload()

    def _cancel_stale_timer(self) -> None:
        if self._stale_timer is not None:
            self._stale_timer.stop()
            self._stale_timer = None

    def reload(self) -> None:
        """Start a refresh unless one is still running (a slow one is never stacked)."""
        if not self.is_attached:
            return
        if self.loading_now:
            self._again = True  # e.g. a new filter: run once more when this one is done
            return
        self.loading_now = True
        self.stale = False  # this query sees every flush reported so far
        self._started = time.monotonic()
        self._cancel_stale_timer()
        self.load_started()
        self._load(self.cursor)

    def load_started(self) -> None:
        """On the UI thread, as a query is handed to its worker (Traffic keeps later pushes)."""

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
        if self.active and not self.drawn:
            self.drawn = True
            self.post_message(self.Drawn())
        if self._again:
            self._again = False
            self.reload()
        elif self.stale and self.active:
            self._requery_soon()

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
