"""The console over a lake (`fleetdeck lake attach`): every replica's traces, read-only."""

from __future__ import annotations

import shutil
from pathlib import Path

from textual.pilot import Pilot

from console.commands import instance
from console.lake import layout
from console.lake.export import export
from console.settings import Settings
from console.store.db import Database
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.stream import TraceStream
from console.tui.readmodel.clock import frozen

from .conftest import FROZEN_NOW, drive, loaded, show_traffic


def two_replicas_lake(store: Path, tmp_path: Path) -> tuple[Path, int]:
    """The sample store's traces split between two replicas, both exported to one lake."""
    lake, total = tmp_path / "lake", 0
    for n in range(2):
        data_dir = tmp_path / f"replica-{n}"
        data_dir.mkdir()
        shutil.copy(store / "fleetdeck.duckdb", data_dir / "fleetdeck.duckdb")
        db = Database(data_dir / "fleetdeck.duckdb")
        cur = db.cursor()
        cur.execute(f"DELETE FROM traces WHERE hash(request_id) % 2 <> {n}")
        (count,) = cur.execute("SELECT count(*) FROM traces").fetchall()[0]
        assert count > 0
        total += count
        export(db, lake, layout.replica_id(data_dir))
        db.close()
    return lake, total


def test_the_console_reads_every_replica_from_the_lake_and_says_it_is_read_only(
    store: Path, tmp_path: Path
) -> None:
    lake, total = two_replicas_lake(store, tmp_path)
    settings = Settings(data_dir=tmp_path / "unused", lake_attach=lake)
    with instance.attached(settings) as attached:
        source = f"lake {lake} (read-only)"
        options = ConsoleOptions(seed=False, gateway=False, clock=frozen(FROZEN_NOW), source=source)
        app = FleetdeckApp(attached.engine, options)

        async def scenario(pilot: Pilot[None]) -> None:
            assert app.sub_title == source
            await loaded(pilot, await show_traffic(pilot))
            assert len(app.query_one(TraceStream).rows) == min(total, 1000)

        drive(app, scenario)
        (count,) = attached.engine.db.cursor().execute("SELECT count(*) FROM traces").fetchall()[0]
        assert count == total
