"""The Fleet pane with a balanced route: each deployment's load, share and learned limits."""

from __future__ import annotations

import httpx
from fakes.openai_upstream import FakeOpenAI
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from console.engine import Engine
from console.policy import parse_policy
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.readmodel.clock import frozen

from .conftest import FROZEN_NOW, drive, loaded, show, until

POLICY = """
providers:
  east: {{kind: openai_compat, base_url: "{east}", models: [m]}}
  west: {{kind: openai_compat, base_url: "{west}", models: [m]}}
routes:
  - intent: spread
    primary: east/m
    max_retries: 0
    balance: {{deployments: [{{model: east/m, weight: 3}}, {{model: west/m, weight: 1}}]}}
default_route: spread
"""


def rows(app: FleetdeckApp) -> list[dict[str, str]]:
    table = app.query_one("#fleet-deployments", DataTable)
    columns = [str(column.label) for column in table.columns.values()]
    return [
        dict(zip(columns, (str(cell) for cell in table.get_row_at(index)), strict=True))
        for index in range(table.row_count)
    ]


def test_fleet_shows_each_deployments_share_and_the_limits_it_reported(console_engine: Engine) -> None:
    with FakeOpenAI(models=["m"]) as east, FakeOpenAI(models=["m"]) as west:
        east.answer_headers = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "480"}
        policy = parse_policy(POLICY.format(east=east.base_url, west=west.base_url))
        app = FleetdeckApp(
            console_engine, ConsoleOptions(seed=False, policy=policy, port=0, clock=frozen(FROZEN_NOW))
        )

        async def scenario(pilot: Pilot[None]) -> None:
            pane = await show(pilot, "3", "fleet")
            await loaded(pilot, pane)
            body = {"model": "route:spread", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
            headers = {"Authorization": f"Bearer {app.context.dev_key}"}
            async with httpx.AsyncClient(timeout=60) as client:
                for _ in range(8):
                    response = await client.post(
                        f"{app.context.gateway_url}/v1/chat/completions", json=body, headers=headers
                    )
                    assert response.status_code == 200, response.text
            # Two more refreshes: the second began after the last call (one may have been under way).
            await loaded(pilot, pane, after=pane.loads + 1)
            await until(pilot, lambda: len(rows(app)) == 2 and rows(app)[0]["share, last min"] != "–", "rows")
            east_row, west_row = rows(app)
            assert (east_row["deployment"], east_row["share, last min"], east_row["requests left"]) == (
                "east/m",
                "75.0%",
                "480/500",
            )
            assert (west_row["deployment"], west_row["share, last min"], west_row["requests left"]) == (
                "west/m",
                "25.0%",
                "–",
            )
            assert app.query_one("#fleet-deployments-title", Static).display

        drive(app, scenario)
