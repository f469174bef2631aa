"""The SQL pane: run, row cap, writes refused, errors shown, cancel, saved queries, export."""

from __future__ import annotations

from pathlib import Path

import duckdb
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, RadioSet, Static, TabbedContent, Tree
from textual_fastdatatable import DataTable as ResultTable

from console.engine import Engine
from console.tui.app import FleetdeckApp
from console.tui.panes.sql import SqlPane
from console.tui.readmodel.sql import QueryHistory
from console.tui.screens.export import ExportScreen

from .conftest import drive, loaded, offline_app, show, until

LONG_QUERY = "SELECT sum(a.range * b.range) FROM range(200000) a, range(200000) b"


def status(app: FleetdeckApp) -> str:
    return str(app.query_one("#sql-status", Static).render())


async def run_sql(pilot: Pilot[None], sql: str, key: str = "ctrl+j") -> SqlPane:
    app = pilot.app
    assert isinstance(app, FleetdeckApp)
    pane = await show(pilot, "7", "sql")
    assert isinstance(pane, SqlPane)
    pane.editor.load_text(sql)
    await pilot.press(key)
    await until(pilot, lambda: not pane.running, "the query to finish")
    await pilot.pause()
    return pane


def test_count_runs_and_shows_one_row(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    (traces,) = console_engine.db.cursor().execute("SELECT count(*) FROM traces").fetchone() or (0,)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await run_sql(pilot, "select count(*) from traces")
        assert status(app).startswith("1 row ·")
        table = pane.table
        assert isinstance(table, ResultTable) and table.row_count == 1
        assert pane.result is not None and pane.result.table.column(0)[0].as_py() == traces

    drive(app, scenario)


def test_big_results_are_capped_and_say_so(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await run_sql(pilot, "SELECT range AS n FROM range(25000)")
        assert status(app).startswith("showing 10,000 of 25,000 rows")
        assert pane.table is not None and pane.table.row_count == 10_000

    drive(app, scenario)


def test_writes_are_refused_and_change_nothing(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    count = "SELECT count(*) FROM traces"
    before = console_engine.db.cursor().execute(count).fetchone()

    async def scenario(pilot: Pilot[None]) -> None:
        await run_sql(pilot, "DELETE FROM traces")
        # issue 17: a refusal says the query surface reads the store only, then why
        assert status(app).startswith("refused: the query surface reads the store only")
        assert "DELETE statements are refused" in status(app)
        assert app.query_one("#sql-status").has_class("-error")

    drive(app, scenario)
    assert console_engine.db.cursor().execute(count).fetchone() == before


def test_errors_are_shown_in_the_status_line(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await run_sql(pilot, "SELECT no_such_column FROM traces")
        assert "no_such_column" in status(app)
        assert app.query_one("#sql-status").has_class("-error")

    drive(app, scenario)


def test_cancel_stops_a_long_query_and_the_other_panes_still_answer(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await show(pilot, "7", "sql")
        assert isinstance(pane, SqlPane)
        pane.editor.load_text(LONG_QUERY)
        await pilot.press("ctrl+j")
        assert pane.running
        await pilot.press("escape", "2")  # leave the editor, look at Traffic while it runs
        traffic = app.active_pane
        assert traffic.id == "traffic"
        await loaded(pilot, traffic, after=traffic.loads)
        assert pane.running, "the long query finished before it could be cancelled"
        await show(pilot, "7", "sql")
        await pilot.press("ctrl+g")
        await until(pilot, lambda: not pane.running, "the cancel")
        assert status(app) == "cancelled"
        await run_sql(pilot, "SELECT 42")
        assert status(app).startswith("1 row ·"), "the cursor is unusable after the cancel"

    drive(app, scenario)


def test_a_saved_query_loads_into_the_editor_and_runs(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await show(pilot, "7", "sql")
        assert isinstance(pane, SqlPane)
        saved = app.query_one("#sql-saved", OptionList)
        saved.focus()
        await until(pilot, lambda: saved.has_focus, "the saved queries")
        saved.highlighted = next(i for i, q in enumerate(pane.saved) if q.name == "error_rate")
        await pilot.press("enter")
        assert pane.editor.text.startswith("-- error_rate:")
        await pilot.press("ctrl+j")
        await until(pilot, lambda: not pane.running and pane.result is not None, "the saved query")
        assert pane.result is not None and "error_rate" in pane.result.table.column_names

    drive(app, scenario)


def test_export_writes_the_whole_result_as_parquet_and_csv(console_engine: Engine, tmp_path: Path) -> None:
    app = offline_app(console_engine)

    async def export(pilot: Pilot[None], path: Path, parquet: bool) -> None:
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ExportScreen), "the export dialog")
        if parquet:
            app.screen.query_one(RadioSet).action_next_button()
            await pilot.press("enter")
        app.screen.query_one("#export-path", Input).value = str(path)
        app.screen.query_one("#export-path", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: path.exists() and "exported" in status(app), "the export")

    async def scenario(pilot: Pilot[None]) -> None:
        await run_sql(pilot, "SELECT range AS n FROM range(25000)")
        await export(pilot, tmp_path / "n.parquet", parquet=True)
        await export(pilot, tmp_path / "n.csv", parquet=False)
        assert "exported 25,000 rows" in status(app)

    drive(app, scenario)
    with duckdb.connect() as check:
        assert check.execute(f"SELECT count(*) FROM read_parquet('{tmp_path / 'n.parquet'}')").fetchone() == (
            25000,
        )
        assert check.execute(f"SELECT count(*) FROM read_csv('{tmp_path / 'n.csv'}')").fetchone() == (25000,)


# Issue 21: the catalog, completion, history and keys of the editor.


async def sql_pane(pilot: Pilot[None]) -> SqlPane:
    pane = await show(pilot, "7", "sql")
    assert isinstance(pane, SqlPane)
    await pilot.app.workers.wait_for_complete()
    await until(pilot, lambda: pane.catalog is not None, "the catalog")
    await pilot.pause()
    return pane


def test_the_catalog_lists_the_traces_table_and_its_columns(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await sql_pane(pilot)
        tree = app.query_one("#sql-catalog", Tree)
        traces = next(node for node in tree.root.children if node.data == "traces")
        columns = {str(child.data): child.label.plain for child in traces.children}
        assert "request_id" in columns and "cost_usd" in columns
        assert "VARCHAR" in columns["request_id"] and "DOUBLE" in columns["cost_usd"]
        traces.expand()
        await pilot.pause()
        leaf = next(child for child in traces.children if child.data == "route")
        pane.editor.load_text("select  from traces")
        pane.editor.move_cursor((0, 7))
        tree.focus()
        tree.move_cursor(leaf)
        await pilot.press("enter")
        assert pane.editor.text == "select route from traces"
        assert pane.editor.has_focus

    drive(app, scenario)


def test_ctrl_a_then_typing_replaces_the_text(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await sql_pane(pilot)
        pane.editor.load_text("select 1\nfrom nowhere")
        await pilot.press("ctrl+a", "x")
        assert pane.editor.text == "x"

    drive(app, scenario)


def test_escape_leaves_the_editor_and_a_pane_key_switches_pane(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await sql_pane(pilot)
        assert "Esc leaves the editor" in str(pane.editor.border_subtitle)
        await pilot.press("2")
        assert app.active_pane.id == "sql" and pane.editor.text == "2", "a digit in the editor is text"
        await pilot.press("escape")
        assert not pane.editor.has_focus
        await pilot.press("3")
        assert app.active_pane.id == "fleet"

    drive(app, scenario)


def test_alt_digit_switches_pane_from_inside_the_editor(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await sql_pane(pilot)
        assert pane.editor.has_focus
        await pilot.press("alt+4")
        await until(pilot, lambda: app.active_pane.id == "cost", "the Cost pane")
        assert pane.editor.text == "", "nothing was typed"

    drive(app, scenario)


def test_a_run_query_is_in_the_history_after_a_restart(console_engine: Engine) -> None:
    first = offline_app(console_engine)

    async def run_one(pilot: Pilot[None]) -> None:
        await run_sql(pilot, "SELECT 41 + 1 AS answer")

    drive(first, run_one)
    again = offline_app(console_engine)

    async def recall(pilot: Pilot[None]) -> None:
        pane = await sql_pane(pilot)
        await pilot.press("ctrl+up")
        assert pane.editor.text == "SELECT 41 + 1 AS answer"
        await pilot.press("ctrl+down")
        assert pane.editor.text == ""

    drive(again, recall)


def test_completion_offers_a_column_name_after_a_prefix(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await sql_pane(pilot)
        await pilot.press(*"select request_i")
        assert pane.editor.suggestion == "d"
        await pilot.press("tab")
        assert pane.editor.text == "select request_id"

    drive(app, scenario)


def test_a_binder_error_points_at_the_catalog(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        await run_sql(pilot, "SELECT no_such_column FROM traces")
        assert "Binder Error" in status(app) and "catalog" in status(app)

    drive(app, scenario)


def test_a_query_holding_a_virtual_key_is_never_kept_in_the_history(
    console_engine: Engine, tmp_path: Path
) -> None:
    _, token = console_engine.key_admin.create("history-probe", "dev")
    history = QueryHistory(tmp_path / "sql_history.jsonl")
    assert not history.add(f"SELECT * FROM traces WHERE note = '{token}'")
    assert history.add("SELECT count(*) FROM traces")
    assert token not in (tmp_path / "sql_history.jsonl").read_text()
    assert QueryHistory(tmp_path / "sql_history.jsonl").entries == ["SELECT count(*) FROM traces"]


def test_each_result_tab_keeps_its_own_run_and_closes(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await run_sql(pilot, "SELECT 1 AS first_run")
        await pilot.press("ctrl+t")
        tabbed = app.query_one("#sql-results", TabbedContent)
        await until(pilot, lambda: tabbed.tab_count == 2 and tabbed.active == "sql-tab-2", "a second tab")
        assert pane.result is None and "result tab 2" in status(app)
        pane.editor.load_text("SELECT 2 AS second_run, 3 AS more")
        await pilot.press("ctrl+j")
        await until(pilot, lambda: not pane.running and pane.result is not None, "the second run")
        assert pane.result is not None and pane.result.table.column_names == ["second_run", "more"]
        assert str(tabbed.get_tab("sql-tab-2").label) == "2: SELECT 2 AS second_run, …"
        tabbed.active = "sql-tab-1"
        await pilot.pause()
        assert pane.result is not None and pane.result.table.column_names == ["first_run"]
        assert pane.last_sql == "SELECT 1 AS first_run"
        await pilot.press("ctrl+w")
        await until(pilot, lambda: tabbed.tab_count == 1, "the tab to close")
        assert pane.result is not None and pane.result.table.column_names == ["second_run", "more"]
        await pilot.press("ctrl+w")
        assert tabbed.tab_count == 1 and "the last result tab stays open" in status(app)

    drive(app, scenario)


def test_a_query_typed_with_completion_runs_again_from_the_history(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    (traces,) = console_engine.db.cursor().execute(
        "SELECT count(DISTINCT workflow_id) FROM traces"
    ).fetchone() or (0,)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await sql_pane(pilot)
        await pilot.press(*"select count(distinct workflow_i")
        assert pane.editor.suggestion == "d"
        await pilot.press("tab", *") as n from trac")
        assert pane.editor.suggestion == "es"
        await pilot.press("tab")
        typed = "select count(distinct workflow_id) as n from traces"
        assert pane.editor.text == typed
        await pilot.press("ctrl+j")
        await until(pilot, lambda: not pane.running and pane.result is not None, "the typed query")
        pane.editor.load_text("select 1 as other")
        await pilot.press("ctrl+j")
        await until(pilot, lambda: not pane.running and pane.last_sql == "select 1 as other", "another one")
        await pilot.press("ctrl+up", "ctrl+up")
        assert pane.editor.text == typed
        await pilot.press("ctrl+j")
        await until(pilot, lambda: not pane.running and pane.last_sql == typed, "the query from the history")
        assert pane.result is not None and pane.result.table.column("n")[0].as_py() == traces

    drive(app, scenario)
