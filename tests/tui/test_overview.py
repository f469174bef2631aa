"""The Overview: a tile turns red on real traffic through the gateway; Enter opens the traces behind it."""

from __future__ import annotations

import httpx
from fakes.openai_upstream import FakeOpenAI, Fault
from textual.pilot import Pilot
from textual.widgets import Input, Static

from console.engine import Engine
from console.policy import parse_policy
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.overview import OverviewPane, OverviewTile
from console.tui.panes.traffic import TrafficPane
from console.tui.screens.trace import TraceScreen

from .conftest import drive, loaded, until
from .test_with_gateway import POLICY

FAILED_CALLS = 3


def test_a_red_error_tile_opens_traffic_filtered_to_the_errors_and_a_trace_opens(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    policy = parse_policy(POLICY.format(base_url=upstream.base_url))
    # The system clock: the tiles' last hour is the hour of these calls (the sample ended long before).
    app = FleetdeckApp(console_engine, ConsoleOptions(seed=False, policy=policy, port=0))

    async def scenario(pilot: Pilot[None]) -> None:
        overview = app.active_pane
        assert isinstance(overview, OverviewPane)
        errors = app.query_one("#tile-errors", OverviewTile)
        await until(
            pilot, lambda: errors.tile is not None and errors.tile.level == "green", "a green error tile"
        )
        upstream.fail_next(FAILED_CALLS, Fault(status=500, message="the upstream broke"))
        async with httpx.AsyncClient() as client:
            for number in range(FAILED_CALLS + 1):
                response = await client.post(
                    f"{app.context.gateway_url}/v1/chat/completions",
                    json={
                        "model": "route:general",
                        "messages": [{"role": "user", "content": f"call {number}"}],
                    },
                    headers={
                        "Authorization": f"Bearer {app.context.dev_key}",
                        "x-fleetdeck-workflow": "tiles",
                    },
                )
                assert (response.status_code == 200) == (number == FAILED_CALLS), response.text
        await until(
            pilot, lambda: errors.tile is not None and errors.tile.level == "red", "the error tile red"
        )
        assert errors.tile is not None and errors.tile.value == "75.0%"
        assert errors.has_class("-red") and "red" in str(errors.border_subtitle)

        errors.focus()
        await pilot.press("enter")
        traffic = app.query_one(TrafficPane)
        await until(pilot, lambda: app.active_pane is traffic and traffic.stream.has_focus, "Traffic")
        assert app.query_one("#traffic-filter", Input).value == "status:error since:1h"  # shown, editable
        await loaded(pilot, traffic, after=traffic.loads)
        assert str(app.query_one("#traffic-summary", Static).render()).startswith(
            "status=error, last 1h · 3 traces"
        )
        assert [row.status for row in traffic.stream.rows] == ["error"] * FAILED_CALLS

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TraceScreen), "the trace")
        screen = app.screen
        assert isinstance(screen, TraceScreen)
        await until(pilot, lambda: screen.detail is not None, "the trace's detail")
        assert screen.detail is not None
        assert screen.detail.row["request_id"] == traffic.stream.rows[0].request_id
        assert screen.detail.row["status"] == "error"

    drive(app, scenario)
