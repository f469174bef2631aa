"""The console with its gateway running (against a fake upstream), and on an empty store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select, Static

from console.engine import Engine
from console.policy import parse_policy
from console.settings import Settings
from console.tui.app import ConsoleOptions, FleetdeckApp
from console.tui.panes.playground import PlaygroundPane
from console.tui.readmodel.clock import frozen

from .conftest import FROZEN_NOW, SIZE, drive, loaded, show, show_traffic, until

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: {base_url}
    prices: {{mock-gpt: {{input: 1.0, output: 2.0}}}}
routes:
  - intent: general
    primary: lab/mock-gpt
    max_retries: 0
default_route: general
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(models=["mock-gpt"]) as fake:
        yield fake


def gateway_app(engine: Engine, upstream: FakeOpenAI) -> FleetdeckApp:
    policy = parse_policy(POLICY.format(base_url=upstream.base_url))
    options = ConsoleOptions(seed=False, policy=policy, port=0, clock=frozen(FROZEN_NOW))
    return FleetdeckApp(engine, options)


def test_the_header_shows_the_gateway_and_its_key_and_curl_calls_appear_in_traffic(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        assert f"gateway {url}/v1" in app.sub_title and key in app.sub_title
        traffic = await show_traffic(pilot)
        await loaded(pilot, traffic)
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{url}/v1/chat/completions",
                json={"model": "route:general", "messages": [{"role": "user", "content": "hello console"}]},
                headers={"Authorization": f"Bearer {key}", "x-fleetdeck-workflow": "curl-check"},
            )
        assert response.status_code == 200, response.text
        await until(pilot, lambda: traffic.stream.rows[0].workflow_id == "curl-check", "the call in Traffic")
        assert traffic.stream.rows[0].model == "lab/mock-gpt"

    drive(app, scenario)


def test_fleet_shows_the_provider_and_its_breaker(console_engine: Engine, upstream: FakeOpenAI) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        await loaded(pilot, await show(pilot, "3", "fleet"))
        providers = app.query_one("#fleet-providers", DataTable)
        assert providers.row_count == 1
        row = [str(cell) for cell in providers.get_row_at(0)]
        assert row[0] == "lab" and row[1] == "openai_compat"

    drive(app, scenario)


def test_playground_streams_an_answer_through_the_gateway(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await show(pilot, "8", "playground")
        assert isinstance(pane, PlaygroundPane)
        select = app.query_one("#playground-model", Select)
        await until(pilot, lambda: isinstance(select.value, str), "the models")
        assert select.value == "route:general"
        prompt = app.query_one("#playground-input", Input)
        prompt.value = "repeat after me banana"
        await pilot.press("enter")
        await until(pilot, lambda: not pane.sending and len(pane.messages) == 2, "the answer")
        answer = pane.messages[-1]["content"]
        assert "banana" in answer
        assert answer in str(app.query(".chat-assistant").last(Static).render())
        assert upstream.requests[-1].body["stream"] is True

    drive(app, scenario)


def test_an_empty_store_is_seeded_and_the_console_says_so(tmp_path: Path) -> None:
    with Engine(Settings(data_dir=tmp_path / "empty")) as engine:
        app = FleetdeckApp(engine, ConsoleOptions(gateway=False))

        async def scenario(pilot: Pilot[None]) -> None:
            await until(pilot, lambda: not app.setting_up, "the first-run import")
            assert app.seeded > 60_000
            messages = [str(n.message) for n in app._notifications]
            assert any("imported the sample traces" in m for m in messages)
            await loaded(pilot, await show_traffic(pilot))
            await loaded(pilot, await show(pilot, "6", "audit"))
            await pilot.press("v")
            verified = app.query_one("#audit-verified", Static)
            await until(pilot, lambda: "audit chain" in str(verified.render()), "the verification")
            assert str(verified.render()).startswith("audit chain holds"), verified.render()

        drive(app, scenario)
        (count,) = engine.db.cursor().execute("SELECT count(*) FROM traces").fetchone() or (0,)
        assert count > 60_000


def test_the_gateway_problem_is_shown_when_the_port_is_taken(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    async def occupy() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        policy = parse_policy(POLICY.format(base_url=upstream.base_url))
        options = ConsoleOptions(seed=False, policy=policy, port=port, clock=frozen(FROZEN_NOW))
        app = FleetdeckApp(console_engine, options)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.ready, "the console")
            assert app.context.gateway_url is None and app.sub_title == "gateway off"
            assert any("did not start" in str(n.title) for n in app._notifications)
        server.close()

    asyncio.run(occupy())


def test_playground_shows_the_gateways_error(console_engine: Engine, upstream: FakeOpenAI) -> None:
    app = gateway_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        pane = await show(pilot, "8", "playground")
        assert isinstance(pane, PlaygroundPane)
        select = app.query_one("#playground-model", Select)
        await until(pilot, lambda: isinstance(select.value, str), "the models")
        upstream.fail_next(1, Fault(status=400, message="the upstream did not like it"))
        app.query_one("#playground-input", Input).value = "hello"
        await pilot.press("enter")
        await until(pilot, lambda: not pane.sending, "the answer")
        answer = app.query(".chat-assistant").last(Static)
        assert answer.has_class("-error") and "error:" in str(answer.render())
        assert app.query_one("#playground-status").has_class("-error")
        assert pane.messages == [], "a failed turn stays out of the conversation"

    drive(app, scenario)


TOOLS_POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: {base_url}
    prices: {{mock-gpt: {{input: 1.0, output: 2.0}}}}
routes:
  - intent: refunds
    primary: lab/mock-gpt
    max_retries: 0
    timeouts: {{total_s: 30}}
    tools: {{approval: [payments.issue_refund]}}
default_route: refunds
"""


def tools_app(engine: Engine, upstream: FakeOpenAI) -> FleetdeckApp:
    policy = parse_policy(TOOLS_POLICY.format(base_url=upstream.base_url))
    options = ConsoleOptions(seed=False, policy=policy, port=0, clock=frozen(FROZEN_NOW))
    return FleetdeckApp(engine, options)


def refund_request(url: str, key: str) -> dict[str, object]:
    function = {"name": "payments.issue_refund", "parameters": {"type": "object"}}
    return {
        "model": "route:refunds",
        "messages": [{"role": "user", "content": "refund order 42"}],
        "tools": [{"type": "function", "function": function}],
        "tool_choice": {"type": "function", "function": {"name": "payments.issue_refund"}},
    }


def test_a_held_tool_call_is_approved_from_the_audit_pane(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    app = tools_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        await loaded(pilot, await show(pilot, "6", "audit"))
        async with httpx.AsyncClient(timeout=60) as client:
            asking = asyncio.ensure_future(
                client.post(
                    f"{url}/v1/chat/completions",
                    json=refund_request(url, key),
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
            held = app.query_one("#audit-held", DataTable)
            await until(pilot, lambda: held.row_count == 1, "the held call in the Audit pane")
            held.focus()
            await pilot.press("a")
            response = await asking
        calls = response.json()["choices"][0]["message"]["tool_calls"]
        assert [call["function"]["name"] for call in calls] == ["payments.issue_refund"]
        assert held.row_count == 0

    drive(app, scenario)
    console_engine.recorder.flush()
    rows = (
        console_engine.db.cursor()
        .execute(
            "SELECT actor, actor_kind FROM audit_log "
            "WHERE action = 'approval.granted' AND actor LIKE 'console:%'"
        )
        .fetchall()
    )
    assert [kind for _, kind in rows] == ["human"], "one audit entry, naming the console's user"


def test_a_route_is_stopped_from_the_audit_pane(console_engine: Engine, upstream: FakeOpenAI) -> None:
    app = tools_app(console_engine, upstream)

    async def scenario(pilot: Pilot[None]) -> None:
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        await loaded(pilot, await show(pilot, "6", "audit"))
        app.query_one("#audit-events", DataTable).focus()
        await pilot.press("s")
        await until(pilot, lambda: bool(app.screen.query("#route-name")), "the stop dialog")
        app.screen.query_one("#route-name", Input).value = "refunds"
        app.screen.query_one("#route-reason", Input).value = "refunds paid twice"
        app.screen.query_one("#route-reason", Input).focus()
        await pilot.press("enter")  # Enter submits (a click may land on a notification)
        stops = app.query_one("#audit-stops", Static)
        await until(pilot, lambda: "refunds" in str(stops.render()), "the stopped route")
        async with httpx.AsyncClient(timeout=30) as client:
            refused = await client.post(
                f"{url}/v1/chat/completions",
                json={"model": "route:refunds", "messages": [{"role": "user", "content": "hi"}]},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert refused.status_code == 503 and "refunds paid twice" in refused.text

    drive(app, scenario)


HANDOFF_POLICY = (
    TOOLS_POLICY
    + """handoffs:
  refund_review:
    schema: {{type: object, required: [amount], properties: {{amount: {{type: number}}}}}}
    provenance: [amount]
    gate: {{kind: approval, deadline_s: 120}}
"""
)


def test_a_held_handoff_is_approved_beside_a_held_tool_call_which_is_denied(
    console_engine: Engine, upstream: FakeOpenAI
) -> None:
    policy = parse_policy(HANDOFF_POLICY.format(base_url=upstream.base_url))
    options = ConsoleOptions(seed=False, policy=policy, port=0, clock=frozen(FROZEN_NOW))
    app = FleetdeckApp(console_engine, options)

    async def scenario(pilot: Pilot[None]) -> None:
        url, key = app.context.gateway_url, app.context.dev_key
        assert url is not None and key is not None
        auth = {"Authorization": f"Bearer {key}"}
        pane = await show(pilot, "6", "audit")
        await loaded(pilot, pane)
        async with httpx.AsyncClient(base_url=f"{url}/v1", timeout=60, headers=auth) as client:
            produced = await client.post(
                "/chat/completions",
                json={"model": "route:refunds", "messages": [{"role": "user", "content": "how much?"}]},
                headers={"X-Fleetdeck-Task": "t-refund"},
            )
            source = produced.headers["x-fleetdeck-request-id"]
            doc = {
                "contract": "refund_review",
                "task_id": "t-refund",
                "payload": {"amount": 42.5},
                "provenance": {"amount": [source]},
            }
            submitted = await client.post("/handoffs", json=doc)
            assert submitted.status_code == 202, submitted.text  # accepted for review: held
            handoff = submitted.json()
            assert handoff["status"] == "held"
            asking = asyncio.ensure_future(client.post("/chat/completions", json=refund_request(url, key)))
            held = app.query_one("#audit-held", DataTable)
            await until(pilot, lambda: held.row_count == 2, "the handoff and the tool call in the Audit pane")
            kinds = [str(held.get_row_at(row)[2]) for row in range(2)]
            assert sorted(kinds) == ["handoff", "tool call"]
            what = str(held.get_row_at(kinds.index("handoff"))[3])
            assert what == f"refund_review ({handoff['id']})"
            held.focus()
            held.move_cursor(row=kinds.index("handoff"))
            await pilot.press("a")
            await until(pilot, lambda: held.row_count == 1, "the handoff decided")
            assert str(held.get_row_at(0)[2]) == "tool call"
            await pilot.press("x")
            response = await asking
            assert held.row_count == 0
            for _ in range(200):
                decided = (await client.get(f"/handoffs/{handoff['id']}")).json()
                if decided["status"] != "held":
                    break
                await pilot.pause(0.05)
        assert decided["status"] == "accepted", decided
        assert response.status_code == 200, response.text
        assert not response.json()["choices"][0]["message"].get("tool_calls"), "the denied call is withheld"

    drive(app, scenario)
    console_engine.recorder.flush()
    rows = (
        console_engine.db.cursor()
        .execute(
            "SELECT action FROM audit_log WHERE actor LIKE 'console:%' AND actor_kind = 'human' ORDER BY seq"
        )
        .fetchall()
    )
    # each decision names the console's user; the handoff's own decision follows its approval
    assert sorted(action for (action,) in rows) == ["approval.denied", "approval.granted", "handoff.accepted"]
