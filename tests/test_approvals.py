"""Tool policy through a real `fleetdeck serve`: disallowed calls removed, held calls approved or denied."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, fleetdeck_serve, rows_once_there, trace_of, wait_for_held
from gateway_process import run_cli as cli

from console.gateway.admin import AdminEndpoint

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 1, output: 1}}}}}}
routes:
  - intent: refunds
    primary: lab/m
    max_retries: 0
    timeouts: {{total_s: {total_s}}}
    tools: {{allow: [orders.get], approval: [payments.issue_refund]}}
default_route: refunds
"""


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def ask_for(served: Served, name: str) -> httpx.Response:
    body = {
        "model": "route:refunds",
        "messages": [{"role": "user", "content": "refund order 42"}],
        "tools": [tool(name)],
        "tool_choice": {"type": "function", "function": {"name": name}},
    }
    return httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=60)


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url, total_s=30)


def held_while(served: Served, name: str, decide: str) -> tuple[httpx.Response, str]:
    """Ask for a tool call needing approval; decide it with the CLI while the response waits."""
    answer: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: answer.append(ask_for(served, name)))
    asking.start()
    approval_id = wait_for_held(served)
    done = cli(served.data_dir, "approvals", decide, approval_id, "--reason", "checked the order")
    assert done.returncode == 0, done.stderr
    asking.join(timeout=60)
    return answer[0], approval_id


def entries(served: Served, approval_id: str) -> list[dict[str, Any]]:
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    sql = (
        "SELECT action, actor, actor_kind, payload FROM audit_log "
        f"WHERE subject = '{approval_id}' ORDER BY seq"
    )
    deadline = time.monotonic() + 10
    while True:
        rows = endpoint.query({"sql": sql}).to_pylist()
        if len(rows) >= 2 or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_an_allowed_tool_call_passes(served: Served) -> None:
    response = ask_for(served, "orders.get")
    calls = response.json()["choices"][0]["message"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["orders.get"]


def test_a_disallowed_tool_call_is_removed_and_flagged(served: Served) -> None:
    response = ask_for(served, "shell.exec")
    choice = response.json()["choices"][0]
    content = choice["message"]["content"]
    assert not choice["message"].get("tool_calls") and "(1 not allowed)" in content
    assert "shell.exec" not in response.text  # the name of a tool the route refuses never reaches the client
    assert choice["finish_reason"] == "stop"
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert trace["reason_code"] == "risk-high-flagged"


def test_a_held_call_is_released_on_approval_with_one_audit_entry(served: Served) -> None:
    response, approval_id = held_while(served, "payments.issue_refund", "approve")
    calls = response.json()["choices"][0]["message"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["payments.issue_refund"]
    audit = entries(served, approval_id)
    assert [row["action"] for row in audit] == ["approval.requested", "approval.granted"]
    decision = audit[1]
    assert decision["actor_kind"] == "human" and "@" in decision["actor"]
    assert orjson.loads(decision["payload"])["reason"] == "checked the order"


def test_a_held_call_is_refused_on_denial_with_one_audit_entry(served: Served) -> None:
    response, approval_id = held_while(served, "payments.issue_refund", "deny")
    message = response.json()["choices"][0]["message"]
    assert not message.get("tool_calls") and "payments.issue_refund: denied" in message["content"]
    audit = entries(served, approval_id)
    assert [row["action"] for row in audit] == ["approval.requested", "approval.denied"]
    assert audit[1]["actor_kind"] == "human"


def test_an_undecided_call_expires_at_the_deadline(upstream: FakeOpenAI, tmp_path: Path) -> None:
    with fleetdeck_serve(tmp_path / "data", POLICY.format(url=upstream.base_url, total_s=2)) as served:
        response = ask_for(served, "payments.issue_refund")
        assert "payments.issue_refund: expired" in response.json()["choices"][0]["message"]["content"]
        sql = "SELECT subject FROM audit_log WHERE action = 'approval.requested'"
        (held,) = rows_once_there(served, sql, "no tool call was held")
        audit = entries(served, str(held["subject"]))
    # Nobody decided: the route's deadline (total_s 2) did, for what was left of it.
    assert [row["action"] for row in audit] == ["approval.requested", "approval.denied"]
    assert (audit[1]["actor"], audit[1]["actor_kind"]) == ("gateway", "system")
    expired = orjson.loads(audit[1]["payload"])
    assert expired["expired"] is True and 0 <= expired["waited_s"] <= 2  # 0: the upstream took it all


def test_deciding_without_an_instance_says_so(tmp_path: Path) -> None:
    done = cli(tmp_path / "nothing", "approvals", "approve", "apr_x")
    assert done.returncode == 1 and "no Fleetdeck instance" in done.stderr
