"""SVG snapshots of every pane over the sample store with the clock frozen (pytest-textual-snapshot).

Every pane (with its charts) and every dialog, at 80×24 and at 180×48. Update them after a
deliberate change of the look with `make screens` (pytest's --snapshot-update, then the SVGs
copied to docs/screens/, which the README's tour links) and review them in git.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TextArea

from console.engine import Engine
from console.tui.app import FleetdeckApp
from console.tui.panes.sql import SqlPane, result_status
from console.tui.readmodel import sql as sql_core
from console.tui.screens.export import ExportScreen
from console.tui.screens.help import HelpScreen
from console.tui.screens.oversight import OverrideScreen, RouteActionScreen

from . import export_screens
from .conftest import loaded, offline_app, show, until

# The smallest terminal the console is for, and a roomy one. Each snapshot's id (in brackets
# in its file name) is also its name in docs/screens/ (`make screens` copies them there).
SIZES = {"80x24": (80, 24), "180x48": (180, 48)}
PANES = [
    ("1", "overview"),
    ("2", "traffic"),
    ("3", "fleet"),
    ("4", "cost"),
    ("5", "drift"),
    ("6", "audit"),
]


def at_both_sizes(*cases: tuple[Any, ...]) -> list[Any]:
    return [
        pytest.param(*case, size, id="-".join([str(case[-1]), label]))
        for case in cases
        for label, size in SIZES.items()
    ]


def by_size(name: str) -> list[Any]:
    return [pytest.param(size, id=f"{name}-{label}") for label, size in SIZES.items()]


async def settle(pilot: Pilot[None]) -> None:
    for screen in pilot.app.screen_stack:  # a dialog's fields too: the app's query sees one screen
        for widget in screen.query(Input):
            widget.cursor_blink = False  # the cursor stays shown
        for area in screen.query(TextArea):
            area.cursor_blink = False
    # Tables size their columns on idle: wait until they have, and no width changes between two looks.
    widths = None
    for _ in range(60):
        await pilot.pause(0.1)
        tables = [  # every screen's (a dialog's background too); not fastdatatable's
            t
            for screen in pilot.app.screen_stack
            for t in screen.query(DataTable)
            if isinstance(t, DataTable)
        ]
        now = [[c.get_render_width(t) for c in t.columns.values()] for t in tables]
        # A table measures its new rows on its next idle: until then its columns are as wide
        # as their labels, and look settled to a busy app (a pane mounted just before a dialog).
        measured = not any(t._require_update_dimensions for t in tables)
        if now == widths and measured:
            break
        widths = now
    await pilot.wait_for_scheduled_animations()


def ready_on(key: str, pane_id: str) -> Any:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetdeckApp)
        await until(pilot, lambda: app.ready, "the console")
        pane = await show(pilot, key, pane_id)
        await loaded(pilot, pane)
        # Once more now that the pane is on screen: a first fill while hidden can size columns narrow.
        loads = pane.loads
        pane.reload()
        await loaded(pilot, pane, after=loads)
        await settle(pilot)

    return run_before


@pytest.mark.parametrize(("key", "pane_id", "size"), at_both_sizes(*PANES))
def test_pane(
    snap_compare: Any, console_engine: Engine, key: str, pane_id: str, size: tuple[int, int]
) -> None:
    assert snap_compare(offline_app(console_engine), run_before=ready_on(key, pane_id), terminal_size=size)


# The SQL pane lists queries/: the snapshot sees a fixed few, so a new query file changes nothing
# here (the other panes still find every query they run).
SNAPSHOT_QUERIES = ("cost_per_outcome", "error_rate", "latency_slo", "spend_by_route_daily")


@pytest.fixture
def few_saved_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [query for query in sql_core.saved_queries() if query.name in SNAPSHOT_QUERIES]
    monkeypatch.setattr(sql_core, "saved_queries", lambda: listed)


async def sql_after_a_query(pilot: Pilot[None]) -> SqlPane:
    app = pilot.app
    assert isinstance(app, FleetdeckApp)
    await until(pilot, lambda: app.ready, "the console")
    pane = await show(pilot, "7", "sql")
    assert isinstance(pane, SqlPane)
    await until(pilot, lambda: pane.catalog is not None, "the catalog")
    pane.editor.load_text(
        "SELECT workflow_id, status, count(*) AS calls\nFROM traces\nGROUP BY ALL\nORDER BY ALL"
    )
    await pilot.press("ctrl+j")
    await until(pilot, lambda: pane.result is not None and not pane.running, "the query")
    assert pane.result is not None
    pane.status(result_status(replace(pane.result, elapsed_s=0.0)))  # the one wall-clock number
    return pane


@pytest.mark.parametrize("size", by_size("sql"))
def test_sql(
    snap_compare: Any, console_engine: Engine, few_saved_queries: None, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await sql_after_a_query(pilot)
        await settle(pilot)

    assert snap_compare(offline_app(console_engine), run_before=run_before, terminal_size=size)


@pytest.mark.parametrize("size", by_size("playground"))
def test_playground(snap_compare: Any, console_engine: Engine, size: tuple[int, int]) -> None:
    """Without a gateway: what it says, and where the conversation goes."""
    assert snap_compare(
        offline_app(console_engine), run_before=ready_on_static("8", "playground"), terminal_size=size
    )


def ready_on_static(key: str, pane_id: str) -> Any:
    """For panes that do not refresh on a timer: shown, then settled."""

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, FleetdeckApp)
        await until(pilot, lambda: app.ready, "the console")
        await show(pilot, key, pane_id)
        await pilot.pause(0.2)
        await settle(pilot)

    return run_before


async def a_trace(pilot: Pilot[None]) -> None:
    """The third call on Traffic, opened."""
    app = pilot.app
    await until(pilot, lambda: getattr(app, "ready", False), "the console")
    traffic = await show(pilot, "2", "traffic")
    await loaded(pilot, traffic)
    await pilot.press("down", "down", "enter")
    await until(pilot, lambda: getattr(app.screen, "detail", None) is not None, "the trace")


async def trace(pilot: Pilot[None]) -> None:
    await a_trace(pilot)


async def override(pilot: Pilot[None]) -> None:
    await a_trace(pilot)
    await pilot.press("o")
    await until(pilot, lambda: isinstance(pilot.app.screen, OverrideScreen), "the override dialog")


async def help_screen(pilot: Pilot[None]) -> None:
    await until(pilot, lambda: getattr(pilot.app, "ready", False), "the console")
    await pilot.press("f1")
    await until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help")


async def stop_route(pilot: Pilot[None]) -> None:
    await until(pilot, lambda: getattr(pilot.app, "ready", False), "the console")
    audit = await show(pilot, "6", "audit")
    await loaded(pilot, audit)
    await pilot.press("s")
    await until(pilot, lambda: isinstance(pilot.app.screen, RouteActionScreen), "the stop dialog")


async def export(pilot: Pilot[None]) -> None:
    await sql_after_a_query(pilot)
    for area in pilot.app.screen.query(TextArea):  # the editor behind the dialog is drawn as the
        area.cursor_blink = False  # dialog opens: its cursor steady, not caught mid-blink
    await pilot.pause()
    await pilot.press("ctrl+s")
    await until(pilot, lambda: isinstance(pilot.app.screen, ExportScreen), "the export dialog")


DIALOGS = {
    "trace": trace,
    "override": override,
    "help": help_screen,
    "stop-route": stop_route,
    "export": export,
}


@pytest.mark.parametrize(("dialog", "size"), at_both_sizes(*[(name,) for name in DIALOGS]))
def test_dialog(
    snap_compare: Any,
    console_engine: Engine,
    few_saved_queries: None,
    dialog: str,
    size: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir("/")  # the export dialog offers a file in the working directory: the same on every box

    async def run_before(pilot: Pilot[None]) -> None:
        await DIALOGS[dialog](pilot)
        await settle(pilot)

    assert snap_compare(offline_app(console_engine), run_before=run_before, terminal_size=size)


def test_docs_screens_are_the_snapshots() -> None:
    """docs/screens/ (the README's tour) holds a copy of every snapshot: `make screens` keeps it so."""
    wanted = export_screens.screens()
    assert sorted(path.name for path in export_screens.SCREENS.glob("*.svg")) == sorted(wanted)
    for name, snapshot in wanted.items():
        assert (export_screens.SCREENS / name).read_bytes() == snapshot.read_bytes(), name
