"""Sessions: calls that carry one X-Fleetdeck-Session (or a conversation id in their
metadata), whatever protocol each speaks, are one timeline and one row of session_summary;
the Traffic pane filters by `session:` and the trace view shows the whole session.

The gateway runs in process, as under the console, so the panes' read model reads the
store the calls were recorded in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI

from console.engine import Engine
from console.policy import parse_policy
from console.settings import Settings
from console.store import queries
from console.tui.readmodel import traffic
from console.tui.screens.trace import session_text

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: "{url}"
    models: [mock-gpt]
    prices: {{mock-gpt: {{input: 1.0, output: 2.0}}}}
routes:
  - {{intent: chat, primary: lab/mock-gpt}}
default_route: chat
"""
SESSION = "s-7f3a"
HELLO = [{"role": "user", "content": "hello there"}]


@dataclass
class Console:
    engine: Engine
    key: str

    @property
    def base_url(self) -> str:
        return f"{self.engine.url}/v1"


@pytest.fixture(scope="module")
def console(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir: Path = tmp_path_factory.mktemp("sessions") / "data"
    with Engine(Settings(data_dir=data_dir)) as engine:
        engine.open_gateway(parse_policy(POLICY.format(url=upstream.base_url)), port=0)
        engine.start()
        yield Console(engine, engine.console_key()[0])


def send(console: Console, path: str, body: dict[str, Any], session: str | None = SESSION) -> str:
    headers = {"Authorization": f"Bearer {console.key}"}
    if session:
        headers["X-Fleetdeck-Session"] = session
    response = httpx.post(f"{console.base_url}/{path}", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["x-fleetdeck-request-id"]


def conversation(console: Console) -> list[str]:
    """Ten calls of one session in three protocols, and two calls outside it."""
    ids: list[str] = []
    for _ in range(4):
        ids.append(
            send(console, "chat/completions", {"model": "route:chat", "messages": HELLO, "max_tokens": 4})
        )
    for _ in range(3):
        ids.append(
            send(console, "responses", {"model": "route:chat", "input": "hello", "max_output_tokens": 4})
        )
    for _ in range(3):
        body = {"model": "route:chat", "messages": HELLO, "max_tokens": 4}
        ids.append(send(console, "messages", body))
    send(console, "chat/completions", {"model": "route:chat", "messages": HELLO}, session=None)
    metadata = {"model": "route:chat", "messages": HELLO, "metadata": {"conversation_id": "c-other"}}
    send(console, "chat/completions", metadata, session=None)
    assert console.engine.recorder.flush()
    return ids


@pytest.fixture(scope="module")
def session_ids(console: Console) -> list[str]:
    return conversation(console)


def test_a_session_across_three_protocols_is_one_summary_row(
    console: Console, session_ids: list[str]
) -> None:
    cur = console.engine.db.cursor()
    calls = cur.execute(
        "SELECT request_id, protocol, cost_usd FROM traces WHERE session_id = ?", [SESSION]
    ).fetchall()
    assert sorted(request_id for request_id, _, _ in calls) == sorted(session_ids)
    summary = queries.run(cur, "session_summary", {"session_id": SESSION}).to_pylist()
    assert len(summary) == 1
    row = summary[0]
    assert row["calls"] == 10 and row["not_ok"] == 0
    assert row["protocols"] == ["chat_completions", "messages", "responses"]
    assert row["cost_usd"] == pytest.approx(sum(cost for _, _, cost in calls)) and row["cost_usd"] > 0
    other = queries.run(cur, "session_summary", {"session_id": "c-other"}).to_pylist()
    assert [r["calls"] for r in other] == [1]  # a conversation id in metadata is a session too


def test_the_pane_filters_by_session_and_the_trace_view_shows_the_timeline(
    console: Console, session_ids: list[str]
) -> None:
    cur = console.engine.db.cursor()
    listed = traffic.recent(cur, traffic.TrafficFilter.parse(f"session:{SESSION}"))
    found = traffic.detail(cur, session_ids[4])
    assert sorted(row.request_id for row in listed) == sorted(session_ids)
    assert found is not None and [c["request_id"] for c in found.session] == session_ids
    running = [c["running_cost_usd"] for c in found.session]
    assert running == sorted(running) and running[-1] == pytest.approx(
        sum(c["cost_usd"] for c in found.session)
    )
    text = session_text(found.session, session_ids[4])
    assert text.count("\n") == 10 and "10 calls" in text
    assert [line.startswith("▶") for line in text.splitlines()[:10]] == [i == 4 for i in range(10)]


def test_a_session_header_that_is_too_long_is_refused(console: Console) -> None:
    body = {"model": "route:chat", "messages": HELLO}
    headers = {"Authorization": f"Bearer {console.key}", "X-Fleetdeck-Session": "s" * 300}
    response = httpx.post(f"{console.base_url}/chat/completions", json=body, headers=headers, timeout=30)
    assert response.status_code == 400
    assert "X-Fleetdeck-Session" in response.json()["error"]["message"]
