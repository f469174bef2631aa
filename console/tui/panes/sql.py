"""SQL: an editor with a catalog, completion and history; results, cancel, saved queries, export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import duckdb
from textual import events, work
from textual._tree_sitter import get_language
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import OptionList, Static, TabbedContent, TabPane, TextArea, Tree
from textual.widgets.option_list import Option

from console.store import adhoc
from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane
from console.tui.readmodel import sql as sql_core
from console.tui.readmodel.sql import ExportFormat, SqlResult
from console.tui.screens.export import ExportRequest, ExportScreen

if TYPE_CHECKING:
    from textual_fastdatatable import DataTable as ResultTable

PLACEHOLDER = "select count(*) from traces    -- ctrl+j runs it; saved queries left, the catalog right"
EDITOR_HINT = "Esc leaves the editor · Ctrl+Enter runs · Ctrl+↑/↓ history · Tab completes"
TABS_HINT = "ctrl+t opens a result tab for the next run · ctrl+w closes one"
TAB_LABEL_CHARS = 24
CATALOG_HINT = "the catalog (right) lists the tables and their columns"


class SqlEditor(TextArea):
    """The query editor: Ctrl+A selects all, Escape leaves, Tab takes the completion offered."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+a", "select_all", "Select all", show=False)]

    class Leave(Message):
        """Escape: the pane moves the focus out of the editor."""

    names: tuple[str, ...] = ()  # set once the catalog is loaded

    def update_suggestion(self) -> None:
        row, column = self.cursor_location
        start, end = self.selection
        line = self.document.get_line(row) if self.document.line_count > row else ""
        at_word_end = column >= len(line) or not (line[column].isalnum() or line[column] == "_")
        self.suggestion = (
            sql_core.completion(line[:column], self.names) if start == end and at_word_end else ""
        )

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            self.post_message(self.Leave())
        elif event.key == "tab" and self.suggestion:
            event.stop()
            event.prevent_default()
            self.insert(self.suggestion)


def sql_language() -> str | None:
    """'sql' when tree-sitter and its SQL grammar are installed (highlighting), else plain text."""
    return "sql" if get_language("sql") is not None else None


def result_table() -> type[ResultTable]:
    """The result's table widget; textual-fastdatatable imports polars (a fifth of a second), so
    it is imported by the first run's worker, not at the console's start."""
    from textual_fastdatatable import DataTable

    return DataTable


def tab_label(number: int, sql: str | None) -> str:
    """A result tab's label: its number and the start of the query it shows."""
    if not sql:
        return f"{number}: (empty)"
    flat = " ".join(sql.split())
    return f"{number}: {flat[:TAB_LABEL_CHARS]}{'…' if len(flat) > TAB_LABEL_CHARS else ''}"


@dataclass
class ResultTab:
    """One result tab: the query it ran and its result (None until a run fills it)."""

    number: int
    sql: str | None = None
    result: SqlResult | None = None

    @property
    def pane_id(self) -> str:
        return f"sql-tab-{self.number}"


def result_status(result: SqlResult) -> str:
    took = humanize.duration_ms(result.elapsed_s * 1000)
    rows = result.table.num_rows
    if result.capped:
        return f"showing {humanize.count(rows)} of {humanize.count(result.total_rows)} rows · {took}"
    return f"{humanize.count(rows)} {'row' if rows == 1 else 'rows'} · {took}"


class SqlPane(Pane):
    TITLE = "SQL"
    REFRESH_S = 0.0  # runs on demand only
    FOCUS = "#sql-editor"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+enter,ctrl+j", "run_query", "Run"),
        Binding("ctrl+g", "cancel_query", "Cancel"),
        Binding("ctrl+s", "export", "Export"),
        Binding("ctrl+o", "focus_saved", "Saved queries", show=False),
        Binding("ctrl+t", "new_tab", "New result tab", priority=True),
        Binding("ctrl+w", "close_tab", "Close result tab", priority=True),  # over the editor's
        Binding("ctrl+up", "history(-1)", "Older query", show=False),
        Binding("ctrl+down", "history(1)", "Newer query", show=False),
    ]

    class CatalogLoaded(Message):
        def __init__(self, catalog: list[sql_core.CatalogTable] | None, error: str | None) -> None:
            super().__init__()
            self.catalog, self.error = catalog, error

    class Finished(Message):
        def __init__(
            self,
            tab: ResultTab,
            sql: str,
            result: SqlResult | None,
            error: str | None,
            refused: bool = False,
        ) -> None:
            super().__init__()
            self.tab, self.sql, self.result = tab, sql, result
            self.error = error
            self.refused = refused

    class Exported(Message):
        def __init__(self, path: Path | None, rows: int, error: str | None) -> None:
            super().__init__()
            self.path, self.rows, self.error = path, rows, error

    def __init__(self, context: ConsoleContext, *, id: str = "sql") -> None:
        super().__init__(context, id=id)
        self.running = False
        self.tabs: dict[str, ResultTab] = {"sql-tab-1": ResultTab(1)}
        self._numbered = 1  # the last tab's number (numbers are not reused)
        self.saved = sql_core.saved_queries()
        self.catalog: list[sql_core.CatalogTable] | None = None
        self.history = sql_core.QueryHistory(context.engine.settings.data_dir / sql_core.HISTORY_FILE)
        self.recalled: int | None = None  # the index in history.entries shown in the editor

    def compose(self) -> ComposeResult:
        with Horizontal(id="sql-top"):
            yield OptionList(*[Option(query.name, id=query.name) for query in self.saved], id="sql-saved")
            yield SqlEditor.code_editor(
                "", language=sql_language(), id="sql-editor", soft_wrap=False, placeholder=PLACEHOLDER
            )
            yield Tree("store", id="sql-catalog")
        yield Static("ctrl+j runs · ctrl+g cancels · ctrl+s exports", id="sql-status", classes="pane-status")
        with TabbedContent(id="sql-results"):
            yield TabPane(tab_label(1, None), Static(TABS_HINT, classes="sql-tab-hint"), id="sql-tab-1")

    def on_mount(self) -> None:
        super().on_mount()
        self.editor.border_subtitle = EDITOR_HINT
        catalog = self.query_one("#sql-catalog", Tree)
        catalog.show_root = False
        catalog.border_title = "catalog"
        self._load_catalog(self.context.new_cursor())

    def activate(self) -> None:
        self.active = True
        self.call_after_refresh(self.focus_main)

    @work(thread=True, exit_on_error=False, group="sql-catalog")
    def _load_catalog(self, cursor: duckdb.DuckDBPyConnection) -> None:
        try:
            catalog = sql_core.load_catalog(cursor)
        except duckdb.Error as exc:
            self.post_message(self.CatalogLoaded(None, str(exc)))
        else:
            self.post_message(self.CatalogLoaded(catalog, None))
        finally:
            self.context.release(cursor)

    def on_sql_pane_catalog_loaded(self, message: SqlPane.CatalogLoaded) -> None:
        if message.catalog is None:
            self.status(f"the catalog did not load: {message.error}", error=True)
            return
        self.catalog = message.catalog
        self.editor.names = tuple(sql_core.catalog_names(message.catalog))
        tree = self.query_one("#sql-catalog", Tree)
        tree.clear()
        for table in message.catalog:
            label = table.name if table.kind == "BASE TABLE" else f"{table.name} (view)"
            node = tree.root.add(label, data=table.name)
            for column, kind in table.columns:
                node.add_leaf(f"{column} [dim]{kind}[/dim]", data=column)

    def on_tree_node_selected(self, event: Tree.NodeSelected[str]) -> None:
        event.stop()
        if event.node.allow_expand or event.node.data is None:
            return
        self.editor.insert(event.node.data)
        self.editor.focus()

    def on_sql_editor_leave(self, message: SqlEditor.Leave) -> None:
        message.stop()
        table = self.table
        (table if table is not None else self.query_one("#sql-catalog", Tree)).focus()

    @property
    def tab(self) -> ResultTab:
        """The result tab shown: a run fills it, an export writes its query's result."""
        active = self.query_one("#sql-results", TabbedContent).active
        return self.tabs.get(active) or next(iter(self.tabs.values()))

    @property
    def result(self) -> SqlResult | None:
        return self.tab.result

    @property
    def last_sql(self) -> str | None:
        return self.tab.sql

    @property
    def table(self) -> ResultTable | None:
        """The shown tab's result table, once a run filled it."""
        found = self.query(f"#{self.tab.pane_id} .sql-table")
        return found.first(result_table()) if found else None

    async def action_new_tab(self) -> None:
        """A new, empty result tab, shown: the next run fills it and the others keep theirs."""
        self._numbered += 1
        tab = ResultTab(self._numbered)
        self.tabs[tab.pane_id] = tab
        tabbed = self.query_one("#sql-results", TabbedContent)
        await tabbed.add_pane(
            TabPane(tab_label(tab.number, None), Static(TABS_HINT, classes="sql-tab-hint"), id=tab.pane_id)
        )
        tabbed.active = tab.pane_id
        self.status(f"result tab {tab.number}: the next run shows here · ctrl+w closes it")

    async def action_close_tab(self) -> None:
        if self.running:
            self.status("a query is running: wait for it or cancel it (ctrl+g)", error=True)
            return
        if len(self.tabs) == 1:
            self.status("the last result tab stays open", error=True)
            return
        tab = self.tab
        del self.tabs[tab.pane_id]
        await self.query_one("#sql-results", TabbedContent).remove_pane(tab.pane_id)
        self.status(f"closed result tab {tab.number}")

    def action_history(self, step: int) -> None:
        entries = self.history.entries
        if not entries:
            self.status("no query in the history yet")
            return
        at = len(entries) if self.recalled is None else self.recalled
        at = max(0, min(len(entries), at + step))
        self.recalled = None if at == len(entries) else at
        self.editor.load_text("" if self.recalled is None else entries[at])
        self.editor.move_cursor(self.editor.document.end)
        where = "new query" if self.recalled is None else f"history {at + 1}/{len(entries)}"
        self.status(f"{where} · ctrl+↑ older, ctrl+↓ newer")

    @property
    def editor(self) -> SqlEditor:
        return self.query_one("#sql-editor", SqlEditor)

    def status(self, text: str, error: bool = False) -> None:
        line = self.query_one("#sql-status", Static)
        line.update(text)
        line.set_class(error, "-error")

    def action_run_query(self) -> None:
        if self.running:
            self.status("a query is running: ctrl+g cancels it", error=True)
            return
        text = self.editor.selected_text.strip() or self.editor.text.strip()
        if not text:
            self.status("nothing to run: type a query", error=True)
            return
        self.running = True
        self.recalled = None
        tab = self.tab
        self.status(f"running in result tab {tab.number}… (ctrl+g cancels)")
        self._run(self.cursor, text, tab)

    @work(thread=True, exit_on_error=False, group="sql")
    def _run(self, cursor: duckdb.DuckDBPyConnection, text: str, tab: ResultTab) -> None:
        self.history.add(text)  # a file write: here, off the UI thread
        try:
            result = sql_core.run_capped(cursor, text)
        except adhoc.QueryRefused as exc:
            self.post_message(self.Finished(tab, text, None, f"refused: {exc}", refused=True))
        except duckdb.InterruptException:
            self.post_message(self.Finished(tab, text, None, "cancelled"))
        except duckdb.BinderException as exc:
            self.post_message(self.Finished(tab, text, None, f"{exc} · {CATALOG_HINT}"))
        except duckdb.Error as exc:
            self.post_message(self.Finished(tab, text, None, str(exc)))
        else:
            result_table()  # imported here, off the UI thread, before the table is shown
            self.post_message(self.Finished(tab, text, result, None))

    async def on_sql_pane_finished(self, message: SqlPane.Finished) -> None:
        self.running = False
        if message.result is None:
            self.status(message.error or "failed", error=True)
            if message.refused:
                self.notify(message.error or "", title="Query refused", severity="error", timeout=8)
            return
        tab = message.tab
        if tab.pane_id not in self.tabs:
            return  # its tab was closed meanwhile
        tab.sql, tab.result = message.sql, message.result
        self.status(result_status(message.result))
        await self._show_table(tab, message.result)

    async def _show_table(self, tab: ResultTab, result: SqlResult) -> None:
        tabbed = self.query_one("#sql-results", TabbedContent)
        tabbed.get_tab(tab.pane_id).label = tab_label(tab.number, tab.sql)
        box = tabbed.get_pane(tab.pane_id)
        await box.remove_children()  # the table before, gone before its successor takes its id
        await box.mount(
            result_table()(
                data=result.table,
                max_rows=sql_core.ROW_CAP,
                null_rep="∅",
                render_markup=False,
                id=f"sql-table-{tab.number}",
                classes="sql-table",
            )
        )

    def action_cancel_query(self) -> None:
        if not self.running:
            self.status("no query is running")
            return
        self.status("cancelling…")
        self.cursor.interrupt()

    def action_export(self) -> None:
        if self.last_sql is None:
            self.status("run a query first, then export its result", error=True)
            return
        if self.running:
            self.status("a query is running: wait for it or cancel it (ctrl+g)", error=True)
            return
        self.app.push_screen(ExportScreen(), self._export_chosen)

    def _export_chosen(self, request: ExportRequest | None) -> None:
        if request is None or self.last_sql is None:
            return
        self.status(f"exporting to {request.path}… (its progress is in the header)")
        total = self.result.total_rows if self.result is not None else None
        self._export(self.cursor, self.last_sql, request.path, request.format, total)

    @work(thread=True, exit_on_error=False, group="sql-export")
    def _export(
        self, cursor: duckdb.DuckDBPyConnection, text: str, path: Path, fmt: ExportFormat, total: int | None
    ) -> None:
        try:
            rows = sql_core.export(cursor, text, path, fmt, self.context.engine.progress, total)
        except (duckdb.Error, adhoc.QueryRefused, OSError) as exc:
            self.post_message(self.Exported(None, 0, str(exc)))
        else:
            self.post_message(self.Exported(path, rows, None))

    def on_sql_pane_exported(self, message: SqlPane.Exported) -> None:
        if message.error is not None:
            self.status(f"export failed: {message.error}", error=True)
            return
        self.status(f"exported {humanize.count(message.rows)} rows to {message.path}")
        self.notify(f"{humanize.count(message.rows)} rows to {message.path}", title="Exported")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        named = next(query for query in self.saved if query.name == event.option.id)
        self.editor.load_text(sql_core.example_call(named))
        self.editor.focus()
        self.status(f"{named.name}: parameters are NULL (their defaults); ctrl+j runs")

    def action_focus_saved(self) -> None:
        self.query_one("#sql-saved", OptionList).focus()
