"""Long jobs of the console's start: the header shows their percentage, a notification their end."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from fakes.openai_upstream import FakeOpenAI
from textual.pilot import Pilot
from textual.widgets import Input

from console.engine import Engine
from console.gateway.cache_index import INDEX_LOAD
from console.gateway.cache_store import Entry, StoredEntries
from console.progress import Step
from console.quality import monitor
from console.store import retention
from console.tui.app import FleetdeckApp
from console.tui.panes.sql import SqlPane
from console.tui.screens.export import ExportScreen

from .conftest import drive, loaded, offline_app, show, until
from .test_with_gateway import gateway_app


def cached(n: int) -> list[Entry]:
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((n, 32)).astype(np.float32)
    expires = time.time() + 3600
    return [
        Entry(
            f"e{i}",
            f"x{i}",
            "a-scope",
            "general",
            {},
            None,
            0.0,
            expires,
            "q",
            vector / np.linalg.norm(vector),
        )
        for i, vector in enumerate(vectors)
    ]


def test_the_cache_index_load_is_told_when_done(console_engine: Engine, upstream: FakeOpenAI) -> None:
    StoredEntries(console_engine.db).write(cached(40))
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: any(INDEX_LOAD in str(n.message) for n in app._notifications), "the toast")
        (told,) = [n for n in app._notifications if INDEX_LOAD in str(n.message)]
        assert str(told.message) == f"{INDEX_LOAD}: done (100%)"
        assert INDEX_LOAD not in app.sub_title

    drive(app, scenario)


def test_a_job_under_way_shows_its_percentage_in_the_header(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        app._job_step(Step(3, 4, "MiniLM conversion"))  # as the cache's warm-up thread tells it
        await until(pilot, lambda: "MiniLM conversion 75%" in app.sub_title, "the percentage")
        assert app.sub_title.startswith(f"gateway {app.context.gateway_url}/v1")
        app._job_step(Step(4, 4, "MiniLM conversion"))
        await until(pilot, lambda: "MiniLM conversion" not in app.sub_title, "the job's end")
        assert any(str(n.message) == "MiniLM conversion: done (100%)" for n in app._notifications)

    drive(app, scenario)


# The jobs the console starts or runs: drift, retention, an export. Each tells its steps to the
# Engine's progress, which the console shows in the header and ends with a notification.


def watched(app: FleetdeckApp, steps: list[Step]) -> None:
    """Record every step the console hears, and let the console hear it too."""
    shown = app.context.engine.progress

    def both(step: Step) -> None:
        steps.append(step)
        shown(step)

    app.context.engine.progress = both


def told(app: FleetdeckApp, job: str) -> bool:
    return any(str(n.message) == f"{job}: done (100%)" for n in app._notifications)


def test_a_drift_run_started_from_the_drift_pane_shows_its_progress(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    steps: list[Step] = []

    async def scenario(pilot: Pilot[None]) -> None:
        watched(app, steps)
        await loaded(pilot, await show(pilot, "5", "drift"))
        await pilot.press("d")
        await until(pilot, lambda: told(app, monitor.JOB), "the end of the drift run")
        await until(pilot, lambda: any("alert(s) raised" in str(n.message) for n in app._notifications))
        assert monitor.JOB not in app.sub_title

    drive(app, scenario)
    assert [step.percent for step in steps if step.name == monitor.JOB] == [0, 33, 67, 100]


def test_a_retention_run_shows_a_step_per_table(console_engine: Engine) -> None:
    app = offline_app(console_engine)
    steps: list[Step] = []

    async def scenario(pilot: Pilot[None]) -> None:
        watched(app, steps)
        await asyncio.to_thread(console_engine.retention.apply)  # as its hourly schedule runs it
        await until(pilot, lambda: told(app, retention.JOB), "the end of the retention run")

    drive(app, scenario)
    done = [step.done for step in steps if step.name == retention.JOB]
    assert done == [*range(len(retention.PURGES) + 2), 1]  # a step per table, rollups, audit; the end


def test_an_export_from_the_sql_pane_counts_its_rows(console_engine: Engine, tmp_path: Path) -> None:
    app = offline_app(console_engine)
    steps: list[Step] = []
    path = tmp_path / "n.csv"

    async def scenario(pilot: Pilot[None]) -> None:
        watched(app, steps)
        pane = await show(pilot, "7", "sql")
        assert isinstance(pane, SqlPane)
        pane.editor.load_text("SELECT range AS n FROM range(5000)")
        await pilot.press("ctrl+j")
        await until(pilot, lambda: not pane.running and pane.result is not None, "the query")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ExportScreen), "the export dialog")
        app.screen.query_one("#export-path", Input).value = str(path)
        app.screen.query_one("#export-path", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: told(app, "export to n.csv"), "the end of the export")

    drive(app, scenario)
    counted = [(step.done, step.total) for step in steps if step.name == "export to n.csv"]
    assert counted == [(0, 5000), (2048, 5000), (4096, 5000), (1, 1)]
