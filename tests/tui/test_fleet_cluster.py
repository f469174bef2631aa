"""The Fleet pane of a console whose gateway is a replica of a cluster (a real PostgreSQL and
a second replica, `fleetdeck serve`, beside it); on one box the pane shows no replicas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import fleetdeck_serve
from postgres import fresh_schema, needs_postgresql, pg_url
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from console.engine import Engine
from console.settings import Settings

from .conftest import drive, loaded, show, until
from .test_with_gateway import POLICY, gateway_app


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=["mock-gpt"]) as fake:
        yield fake


@needs_postgresql
def test_fleet_lists_the_clusters_replicas(store: Path, tmp_path: Path, upstream: FakeOpenAI) -> None:
    with fresh_schema() as schema:
        env = {"FLEETDECK_CLUSTER": pg_url(), "FLEETDECK_CLUSTER_SCHEMA": schema}
        policy = POLICY.format(base_url=upstream.base_url)
        with fleetdeck_serve(tmp_path / "other", policy, env) as other:
            settings = Settings(data_dir=store, cluster=pg_url(), cluster_schema=schema)
            with Engine(settings) as engine:
                app = gateway_app(engine, upstream)

                async def scenario(pilot: Pilot[None]) -> None:
                    await loaded(pilot, await show(pilot, "3", "fleet"))
                    table = app.query_one("#fleet-replicas", DataTable)
                    await until(pilot, lambda: table.row_count == 2, "both replicas in the Fleet pane")
                    rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(2)]
                    assert {row[1] for row in rows} == {"alive"}
                    assert other.url in {row[3] for row in rows}
                    assert sum(row[0].endswith("(this one)") for row in rows) == 1
                    title = app.query_one("#fleet-replicas-title", Static)
                    assert "2 of 2 alive" in str(title.render())

                drive(app, scenario)


def test_one_box_shows_no_replicas(console_engine: Engine, upstream: FakeOpenAI) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "3", "fleet"))
        assert not app.query_one("#fleet-replicas", DataTable).display

    drive(app, scenario)
