"""A real store for the console's tests: the sample traces as shipped (not rebased), a frozen clock.

The shipped Parquet files are inserted as they are (the timestamps stay in Sept.–Nov.
2026), and the console's clock is frozen just after the last call, so every pane shows
the same numbers on every run.

The sample traces are imported once per session into a DuckDB file; every test gets a
copy of it, so tests may add traces without seeing each other's.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from textual.pilot import Pilot

from console.engine import Engine
from console.settings import Settings
from console.store import rollups, seed
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.base import Pane
from console.tui.panes.traffic import TrafficPane
from console.tui.readmodel.clock import frozen

# The sample traces end on 2026-11-01 at 23:40 UTC; "now" is just after their last call.
FROZEN_NOW = datetime(2026, 11, 1, 23, 50)
SIZE = (140, 42)
SAMPLE_TABLES = ("traces", "outcomes", "evals", "audit_log")
WAIT_STEPS = 400  # pauses of 0.05 s: a bound on waiting, never a timing assertion


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("sample-store")
    sample = seed.sample_traces_dir()
    with Engine(Settings(data_dir=data_dir)) as engine:
        cur = engine.db.cursor()
        for table in SAMPLE_TABLES:
            # The store reads no files (its external access is off): Arrow in, as the importer does.
            cur.register("sample_rows", pq.read_table(str(sample / f"{table}.parquet")))
            cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM sample_rows")
            cur.unregister("sample_rows")
        rollups.rebuild(cur)  # inserted past the recorder: the panes' rollups made from them
    return data_dir


@pytest.fixture
def store(sample_store: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(sample_store / "fleetdeck.duckdb", data_dir / "fleetdeck.duckdb")
    return data_dir


@pytest.fixture
def console_engine(store: Path) -> Iterator[Engine]:
    with Engine(Settings(data_dir=store)) as engine:
        yield engine


def offline_app(engine: Engine) -> FleetdeckApp:
    """The console over the sample store: no gateway, no seeding, the clock frozen."""
    return FleetdeckApp(engine, ConsoleOptions(seed=False, gateway=False, clock=frozen(FROZEN_NOW)))


Scenario = Callable[[Pilot[None]], Awaitable[None]]


def drive(app: FleetdeckApp, scenario: Scenario) -> None:
    """Run the app headless and play the scenario against it."""

    async def play() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.ready)
            await scenario(pilot)

    asyncio.run(play())


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str = "condition") -> None:
    for _ in range(WAIT_STEPS):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"gave up waiting for {what} (focus: {pilot.app.focused!r})")


async def loaded(pilot: Pilot[None], pane: Pane, after: int = 0) -> None:
    """Wait until the pane has finished more than `after` refreshes."""
    await until(
        pilot,
        lambda: (pane.loads > after and not pane.loading_now) or pane.last_error is not None,
        f"{pane.id} to load",
    )
    assert pane.last_error is None, f"{pane.id} failed to refresh: {pane.last_error}"
    await pilot.pause()


async def show(pilot: Pilot[None], key: str, pane_id: str) -> Pane:
    """Press the pane's number key; wait until it is shown and its main widget has the focus."""
    await pilot.press(key)
    pane = pilot.app.query_one(f"#{pane_id}", Pane)
    main = pane.query_one(pane.FOCUS) if pane.FOCUS else None
    await until(pilot, lambda: pane.active and (main is None or main.has_focus), f"{pane_id} to show")
    return pane


async def show_traffic(pilot: Pilot[None]) -> TrafficPane:
    """Show the Traffic pane (key 2: the Overview is the first pane)."""
    pane = await show(pilot, "2", "traffic")
    assert isinstance(pane, TrafficPane)
    return pane
