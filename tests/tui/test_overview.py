"""The Overview: a tile turns red on real traffic through the gateway; Enter opens the traces behind it."""

from __future__ import annotations

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from textual.pilot import Pilot
from textual.widgets import Input, Static

from console.engine import Engine
from console.policy import parse_policy
from console.store import queries
from console.tui import humanize
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.overview import TILE_NAMES, OverviewPane, OverviewTile
from console.tui.panes.playground import PlaygroundPane
from console.tui.panes.traffic import TrafficPane
from console.tui.screens.trace import TraceScreen

from .conftest import FROZEN_NOW, drive, loaded, offline_app, show, until
from .test_with_gateway import POLICY

FAILED_CALLS = 3


def test_a_red_error_tile_opens_traffic_filtered_to_the_errors_a_trace_and_its_replay(
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

        await pilot.press("p")  # replay it in the Playground: the failed call's prompt, ready to send
        playground = app.query_one(PlaygroundPane)
        await until(pilot, lambda: app.active_pane is playground, "the Playground")
        prompt = app.query_one("#playground-input", Input).value
        assert prompt in {f"call {number}" for number in range(FAILED_CALLS)}
        assert playground.replay_model == "route:general"

    drive(app, scenario)


# -- offline: the sample store, the clock frozen -----------------------------------------

CAPPED_POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "http://127.0.0.1:9/v1", prices: {{m: {{input: 1.0, output: 2.0}}}}}}
routes:
  - intent: refund_agent
    primary: lab/m
    max_budget_daily: {cap}
default_route: refund_agent
"""


def spent_today(engine: Engine, route: str) -> float:
    rows = queries.run(engine.db.cursor(), "spend_to_date", {"as_of": FROZEN_NOW}).to_pylist()
    return next(
        float(r["spend_usd"]) for r in rows if r["scope"] == f"route:{route}" and r["period"] == "day"
    )


@pytest.mark.parametrize(("share", "level"), [(0.5, "green"), (0.9, "amber"), (1.1, "red")])
def test_the_spend_tile_turns_amber_near_a_cap_and_red_past_it(
    console_engine: Engine, share: float, level: str
) -> None:
    spent = spent_today(console_engine, "refund_agent")
    cap = round(spent / share, 4)
    console_engine.policy = parse_policy(CAPPED_POLICY.format(cap=cap))  # read by the store's caps
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        overview = app.query_one(OverviewPane)
        await loaded(pilot, overview)
        tile = app.query_one("#tile-spend_day", OverviewTile)
        assert tile.tile is not None and tile.tile.level == level
        assert tile.has_class(f"-{level}") and tile.border_subtitle == level
        assert tile.tile.detail == f"route refund_agent: {share:.0%} of {humanize.usd(cap)}"
        assert tile.tile.value == humanize.usd(sum_of_routes(console_engine))

    drive(app, scenario)


def sum_of_routes(engine: Engine) -> float:
    rows = queries.run(engine.db.cursor(), "spend_to_date", {"as_of": FROZEN_NOW}).to_pylist()
    return sum(
        float(r["spend_usd"]) for r in rows if r["scope"].startswith("route:") and r["period"] == "day"
    )


def test_enter_on_each_tile_opens_the_pane_behind_it(console_engine: Engine) -> None:
    app = offline_app(console_engine)

    async def scenario(pilot: Pilot[None]) -> None:
        overview = app.query_one(OverviewPane)
        await loaded(pilot, overview)
        for name in TILE_NAMES:
            await show(pilot, "1", "overview")
            tile = app.query_one(f"#tile-{name}", OverviewTile)
            assert tile.tile is not None
            opens = tile.tile.opens
            tile.focus()
            await pilot.press("enter")
            await until(pilot, lambda: app.active_pane.id == opens.pane, f"{name} to open {opens.pane}")  # noqa: B023
            if opens.filter is not None:
                assert app.query_one("#traffic-filter", Input).value == opens.filter
        await show(pilot, "1", "overview")
        await pilot.press("right", "enter")  # the arrows move between tiles, Enter opens the one focused
        await until(pilot, lambda: app.active_pane.id != "overview", "a tile's pane")

    drive(app, scenario)
