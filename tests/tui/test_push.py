"""Live panes by push: the recorder's flushes reach the panes as messages.

A call through the console's gateway reaches the Traffic pane in the flush's message (the
pane queries nothing for it); the rows it takes from a flush are the rows recent_traces
answers for the same filter; a pane that a burst of flushes makes stale queries once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI
from textual.pilot import Pilot

from console.engine import Engine
from console.policy import parse_policy
from console.store.flushed import Flushed
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.overview import OverviewPane
from console.tui.panes.traffic import TrafficPane
from console.tui.readmodel import traffic
from console.tui.readmodel.clock import frozen
from console.tui.readmodel.traffic import TrafficFilter

from .conftest import FROZEN_NOW, drive, loaded, show_traffic, until
from .test_with_gateway import POLICY


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=["mock-gpt"]) as fake:
        yield fake


def gateway_app(engine: Engine, upstream: FakeOpenAI, push: bool = True) -> FleetdeckApp:
    policy = parse_policy(POLICY.format(base_url=upstream.base_url))
    options = ConsoleOptions(seed=False, policy=policy, port=0, clock=frozen(FROZEN_NOW), push=push)
    return FleetdeckApp(engine, options)


async def call(url: str, key: str, workflow: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{url}/v1/chat/completions",
            json={"model": "route:general", "messages": [{"role": "user", "content": "push"}]},
            headers={"Authorization": f"Bearer {key}", "x-fleetdeck-workflow": workflow},
        )
    assert response.status_code == 200, response.text
    return response.headers["x-fleetdeck-request-id"]


def shown(pane: TrafficPane, request_id: str) -> bool:
    return any(row.request_id == request_id for row in pane.stream.rows)


def test_a_call_reaches_the_traffic_pane_in_the_flushs_message_without_a_query(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = gateway_app(console_engine, upstream)
    heard: list[Flushed] = []
    console_engine.recorder.on_flush(heard.append)

    async def scenario(pilot: Pilot[None]) -> None:
        assert app.context.pushed
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        pane = await show_traffic(pilot)
        await loaded(pilot, pane)
        assert pane._timer is not None
        pane._timer.pause()  # the slow timer's query must not be what shows the call
        loads, pushes = pane.loads, pane.pushes
        request_id = await call(url, key, "by-push")
        await until(pilot, lambda: shown(pane, request_id), "the call on the Traffic pane")
        assert pane.loads == loads and not pane.loading_now  # no query brought it
        assert pane.pushes > pushes
        carried = [
            f for f in heard if f.traces is not None and request_id in f.traces["request_id"].to_pylist()
        ]
        assert len(carried) == 1 and carried[0].counts["traces"] >= 1
        row = pane.stream.rows[0]
        assert (row.request_id, row.workflow_id, row.model) == (request_id, "by-push", "lab/mock-gpt")
        # What the push put there is what the query answers.
        queried = traffic.recent(pane.cursor, pane.filter, traffic.STREAM_CAP, FROZEN_NOW)
        assert pane.stream.rows == queried

    drive(app, scenario)


def test_a_filtered_stream_takes_only_the_pushed_rows_that_pass_its_filter(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        pane = await show_traffic(pilot)
        pane.apply_filter("workflow:wanted")
        await loaded(pilot, pane, after=pane.loads)
        assert pane.stream.rows == []
        assert pane._timer is not None
        pane._timer.pause()
        loads, pushes = pane.loads, pane.pushes
        other = await call(url, key, "unwanted")
        wanted = await call(url, key, "wanted")
        await until(pilot, lambda: shown(pane, wanted), "the wanted call")
        await until(pilot, lambda: pane.pushes > pushes, "the flushes")
        assert not shown(pane, other)
        assert [row.workflow_id for row in pane.stream.rows] == ["wanted"]
        assert pane.loads == loads  # pushed, not queried

    drive(app, scenario)


def test_rows_pushed_while_a_query_runs_are_kept_in_its_answer(
    console_engine: Engine, upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        pane = await show_traffic(pilot)
        await loaded(pilot, pane)
        assert pane._timer is not None
        pane._timer.pause()
        answered, release = threading.Event(), threading.Event()
        fetch = pane.fetch

        def held(cursor: Any) -> Any:  # the query's snapshot is taken, its answer held back
            data = fetch(cursor)
            answered.set()
            release.wait(60)
            return data

        monkeypatch.setattr(pane, "fetch", held)
        loads = pane.loads
        pane.reload()
        await until(pilot, answered.is_set, "the query's snapshot")
        request_id = await call(url, key, "meanwhile")
        await until(pilot, lambda: shown(pane, request_id), "the pushed row")
        release.set()
        await loaded(pilot, pane, after=loads)
        assert shown(pane, request_id)  # the older answer did not wipe it out

    drive(app, scenario)


def test_without_push_the_traffic_pane_polls(console_engine: Engine, upstream: FakeOpenAI) -> None:
    app = gateway_app(console_engine, upstream, push=False)

    async def scenario(pilot: Pilot[None]) -> None:
        assert not app.context.pushed
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        pane = await show_traffic(pilot)
        await loaded(pilot, pane)
        loads = pane.loads
        request_id = await call(url, key, "by-poll")
        await until(pilot, lambda: shown(pane, request_id), "the call on the Traffic pane")
        assert pane.loads > loads and pane.pushes == 0

    drive(app, scenario)


def test_a_burst_of_flushes_makes_a_shown_pane_query_once(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        overview = app.query_one(OverviewPane)
        assert overview.active
        await until(pilot, lambda: not app.setting_up, "the setup to end")
        assert console_engine.recorder.flush()  # the start's audit events stored and posted
        assert overview._timer is not None
        overview._timer.pause()  # only the flushes make it query

        def settled() -> bool:
            busy = overview.loading_now or overview.stale or overview._stale_timer is not None
            return overview.loads > 0 and not busy

        await until(pilot, settled, "the overview to settle")
        loads = overview.loads
        for _ in range(5):
            app.post_message(FleetdeckApp.TracesStored(Flushed({"traces": 1})))
        await until(pilot, lambda: overview.stale or overview.loads > loads, "the flushes")
        await until(pilot, lambda: overview.loads > loads and not overview.loading_now, "the re-query")
        assert overview.loads == loads + 1
        assert not overview.stale and overview._stale_timer is None  # nothing more to come
        # A flush of tables it does not show leaves Traffic alone.
        pane = await show_traffic(pilot)
        await loaded(pilot, pane)
        assert not pane.stale
        app.post_message(FleetdeckApp.TracesStored(Flushed({"audit": 3})))
        await pilot.pause()
        assert not pane.stale and not pane.loading_now

    drive(app, scenario)


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "status:error",
        "workflow:support_triage",
        "model:openai/gpt-4o-mini",
        "provider:anthropic",
        "timeout",
        "route:triage_ticket",
        "SUPPORT_t",  # ILIKE: case folded, `_` any one character
        "since:1h",
        "status:ok since:1d support",
    ],
)
def test_pushed_rows_are_the_rows_recent_traces_answers(console_engine: Engine, typed: str) -> None:
    cur = console_engine.db.cursor()
    stored = cur.sql("SELECT * FROM traces").to_arrow_table()
    flt = TrafficFilter.parse(typed)
    now = FROZEN_NOW
    expected = traffic.recent(cur, flt, 300, now)
    assert expected  # each filter finds some of the sample
    assert traffic.pushed(stored, flt, 300, now) == expected


def test_merged_keeps_each_trace_once_newest_first() -> None:
    cur_rows = [_row("b", 2), _row("a", 1)]
    merged = traffic.merged(cur_rows, [_row("c", 3), _row("b", 2)], limit=2)
    assert [row.request_id for row in merged] == ["c", "b"]


def _row(request_id: str, minute: int) -> traffic.StreamRow:
    return traffic.StreamRow(
        request_id,
        FROZEN_NOW + timedelta(minutes=minute),
        *([None] * 6),
        "ok",
        *([None] * 8),
    )
