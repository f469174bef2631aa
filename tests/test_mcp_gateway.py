"""The MCP gateway through a real `fleetdeck serve`, with the SDK's client, in front of two
real MCP servers written with the SDK: `notes` (stdio, started and supervised by Fleetdeck,
tests/fakes/mcp_notes.py) and `crm` (Streamable HTTP on 127.0.0.1, marked remote,
tests/fakes/mcp_crm.py). Both record every call they receive, so a refused call can be
shown never to have reached its server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from fakes.mcp_crm import FakeCrm
from fakes.openai_upstream import FakeOpenAI
from gateway_process import REPO, Served, create_key, fleetdeck_serve, rows_once_there, run_cli, wait_for_held
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from console.gateway.admin import AdminEndpoint

pytestmark = pytest.mark.anyio
CANARY_EMAIL = "canary.4417@example.org"
NOTES_TOKEN = "notes-secret-5d1f0c7a9b"
CRM_KEY = "crm-secret-8e2b44f1a0"

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{lab}"}}
routes:
  - {{intent: support, primary: lab/m}}
mcp_servers:
  notes:
    command: {python}
    args: ["{script}"]
    env: {{NOTES_CALLS: "{calls}", NOTES_PIDS: "{pids}"}}
    secrets: {{NOTES_TOKEN: notes-token}}
    timeout_s: 20
    price_per_call: 0.25
    restart: {{backoff_base_s: 0.05, backoff_max_s: 0.5, jitter: false}}
    on_injection: withhold
    approval_timeout_s: 120
  flaky:
    command: {python}
    args: ["{script}"]
    env: {{NOTES_CALLS: "{flaky_calls}", NOTES_PIDS: "{flaky_pids}"}}
    timeout_s: 20
    breaker: {{consecutive_failures: 1, base_ejection_s: 600, max_ejection_s: 600}}
  crm:
    url: "{crm}"
    remote: true
    pii: redact
    timeout_s: 10
    secrets: {{X-Api-Key: crm-key}}
  crm-strict:
    url: "{crm}"
    remote: true
    pii: block
mcp_access:
  - allow: ["notes__*", "crm__*"]  # approval wins over allow: delete_note waits for a human
    approval: [notes__delete_note]
    keys: [agent]
  - allow: ["flaky__*", "crm-strict__*"]
    keys: [agent]
  - allow: [crm__lookup]
    keys: [reader]
"""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def crm() -> Iterator[FakeCrm]:
    with FakeCrm() as server:
        yield server


@pytest.fixture(scope="module")
def notes_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("notes")
    return folder / "calls.jsonl", folder / "pids.txt"


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI, crm: FakeCrm, notes_files: tuple[Path, Path]) -> str:
    calls, pids = notes_files
    return POLICY.format(
        lab=upstream.base_url,
        python=sys.executable,
        script=REPO / "tests" / "fakes" / "mcp_notes.py",
        calls=calls,
        pids=pids,
        flaky_calls=calls.with_name("flaky-calls.jsonl"),
        flaky_pids=pids.with_name("flaky-pids.txt"),
        crm=crm.url,
    )


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    """The servers' secrets, as a headless box holds them (keyring is off in tests)."""
    return {"FLEETDECK_SECRET_NOTES_TOKEN": NOTES_TOKEN, "FLEETDECK_SECRET_CRM_KEY": CRM_KEY}


@pytest.fixture(scope="module")
def keys(data_dir: Path) -> dict[str, str]:
    return {name: create_key(data_dir, name) for name in ("agent", "reader")}


@pytest.fixture(scope="module")
def served(data_dir: Path, policy: str, keys: dict[str, str], served_env: dict[str, str]) -> Iterator[Served]:
    with fleetdeck_serve(data_dir, policy, served_env) as instance:
        wait_until_up(instance, ("notes", "flaky", "crm", "crm-strict"))
        yield instance


def wait_until_up(served: Served, servers: tuple[str, ...], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        listed = httpx.get(f"{served.url}/healthz", timeout=10).json()["mcp"]
        statuses = {name: server["status"] for name, server in listed.items()}
        if all(statuses.get(name) == "up" for name in servers) or time.monotonic() > deadline:
            assert all(statuses.get(name) == "up" for name in servers), statuses
            return
        time.sleep(0.05)


@asynccontextmanager
async def mcp_client(
    served: Served, key: str, headers: dict[str, str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    """The SDK's client on the gateway's /mcp, authenticated with `key`; `mode` "legacy" speaks
    the initialize handshake of the 2025 protocol versions, "auto" the newest both know."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=60)
    transport = streamable_http_client(f"{served.url}/mcp", http_client=http)
    async with http, Client(transport, cache=None, mode=mode) as client:
        yield client


def notes_calls(notes_files: tuple[Path, Path]) -> list[dict[str, Any]]:
    calls = notes_files[0]
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def traces_of(served: Served, where: str, count: int = 1) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM traces WHERE operation = 'execute_tool' AND {where} ORDER BY ts_start"
    deadline = time.monotonic() + 10
    while True:
        rows = rows_once_there(served, sql, f"no trace where {where}")
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def guard(trace: dict[str, Any]) -> dict[str, Any]:
    found = trace["guard_results"]
    parsed: dict[str, Any] = json.loads(found) if isinstance(found, str) else found
    return parsed


def text_of(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


# -- listing and access ------------------------------------------------------------------


async def test_each_key_lists_only_its_tools(served: Served, keys: dict[str, str]) -> None:
    async with mcp_client(served, keys["agent"]) as client:
        agent = {tool.name: tool for tool in (await client.list_tools()).tools}
    async with mcp_client(served, keys["reader"]) as client:
        reader = {tool.name for tool in (await client.list_tools()).tools}
    async with mcp_client(served, served.key) as client:
        nobody = (await client.list_tools()).tools
    assert reader == {"crm__lookup"}
    assert {"notes__read_note", "notes__delete_note", "crm__lookup", "crm__send_email"} <= set(agent)
    assert "approval" in (agent["notes__delete_note"].description or "")
    assert agent["notes__add"].input_schema["properties"]["a"]["type"] == "integer"
    assert nobody == []  # deny by default


async def test_an_allowed_call_returns_the_servers_result(
    served: Served, keys: dict[str, str], notes_files: tuple[Path, Path]
) -> None:
    headers = {"X-Fleetdeck-Task": "task-allowed", "X-Fleetdeck-Workflow": "notes-agent"}
    async with mcp_client(served, keys["agent"], headers) as client:
        result = await client.call_tool("notes__read_note", {"title": "groceries"})
    assert not result.is_error
    assert "buy milk" in text_of(result)
    assert {"tool": "read_note", "arguments": {"title": "groceries"}} in notes_calls(notes_files)
    (trace,) = traces_of(served, "task_id = 'task-allowed'")
    assert (trace["operation"], trace["protocol"], trace["status"]) == ("execute_tool", "mcp", "ok")
    assert (trace["provider"], trace["request_model"], trace["response_model"]) == (
        "notes",
        "notes__read_note",
        "read_note",
    )
    assert (trace["workflow_id"], trace["cost_usd"], trace["price_source"]) == (
        "notes-agent",
        0.25,
        "mcp_policy",
    )
    assert guard(trace)["mcp"]["decision"] == "allowed"


async def test_the_task_and_workflow_may_come_in_meta(served: Served, keys: dict[str, str]) -> None:
    async with mcp_client(served, keys["agent"]) as client:
        meta = {"task": "task-meta", "workflow": "meta-agent", "intent": "support"}
        await client.call_tool("notes__read_note", {"title": "meta"}, meta=meta)  # type: ignore[arg-type]
    (trace,) = traces_of(served, "task_id = 'task-meta'")
    assert (trace["workflow_id"], trace["route"], trace["status"]) == ("meta-agent", "support", "ok")


def test_every_request_that_calls_no_tool_is_one_trace_too(served: Served, keys: dict[str, str]) -> None:
    headers = {
        "Authorization": f"Bearer {keys['agent']}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-06-18",
        "X-Fleetdeck-Task": "task-housekeeping",
    }
    sent = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 3, "method": "resources/list"},  # not offered: a JSON-RPC error
    ]
    for message in sent:
        answer = httpx.post(f"{served.url}/mcp", json=message, headers=headers, timeout=10)
        assert answer.status_code < 400, answer.text
    sql = (
        "SELECT operation, status, key_id FROM traces WHERE task_id = 'task-housekeeping' "
        f"QUALIFY count(*) OVER () >= {len(sent)} ORDER BY ts_start"
    )
    rows = rows_once_there(served, sql, f"fewer than {len(sent)} traces of the requests")
    assert [(r["operation"], r["status"]) for r in rows] == [
        ("mcp:ping", "ok"),
        ("mcp:tools/list", "ok"),
        ("mcp:notifications/initialized", "ok"),
        ("mcp:other", "error"),
    ]
    assert all(r["key_id"] for r in rows)


async def test_a_client_of_the_handshake_era_is_served_alike(served: Served, keys: dict[str, str]) -> None:
    task = {"X-Fleetdeck-Task": "task-legacy"}
    async with mcp_client(served, keys["reader"], task, mode="legacy") as client:
        assert client.protocol_version.startswith("2025")
        assert [tool.name for tool in (await client.list_tools()).tools] == ["crm__lookup"]
        result = await client.call_tool("crm__lookup", {"customer": "Alan Turing"})
    assert "plan gold" in text_of(result)
    (trace,) = traces_of(served, "task_id = 'task-legacy'")
    assert (trace["status"], trace["provider"]) == ("ok", "crm")


async def test_a_disallowed_call_is_refused_and_never_reaches_the_server(
    served: Served, keys: dict[str, str], crm: FakeCrm
) -> None:
    before = len(crm.calls)
    async with mcp_client(served, keys["reader"], {"X-Fleetdeck-Task": "task-denied"}) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("crm__send_email", {"to": "a@b.c", "body": "hi"})
    assert refused.value.code == -32010
    assert "not allowed" in refused.value.message
    assert len(crm.calls) == before
    (trace,) = traces_of(served, "task_id = 'task-denied'")
    assert (trace["status"], trace["error_type"]) == ("blocked", "tool_not_allowed")
    assert trace["cost_usd"] is None


async def test_an_unknown_tool_is_a_json_rpc_error_and_traced(served: Served, keys: dict[str, str]) -> None:
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-unknown"}) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("notes__no_such_tool", {})
        with pytest.raises(MCPError) as nameless:
            await client.call_tool("nothing", {})  # no rule lists it: refused before any lookup
    assert (refused.value.code, nameless.value.code) == (types.INVALID_PARAMS, -32010)
    traces = traces_of(served, "task_id = 'task-unknown'", count=2)
    assert [t["error_type"] for t in traces] == ["unknown_tool", "tool_not_allowed"]


async def test_arguments_failing_the_schema_are_refused_before_the_server(
    served: Served, keys: dict[str, str], notes_files: tuple[Path, Path]
) -> None:
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-schema"}) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("notes__add", {"a": "one", "b": 2})
        assert (await client.call_tool("notes__add", {"a": 1, "b": 2})).structured_content == {"result": 3}
    assert refused.value.code == types.INVALID_PARAMS
    assert "inputSchema at a" in refused.value.message
    assert [c["arguments"] for c in notes_calls(notes_files) if c["tool"] == "add"] == [{"a": 1, "b": 2}]
    first, second = traces_of(served, "task_id = 'task-schema'", count=2)
    assert (first["error_type"], second["status"]) == ("invalid_arguments", "ok")


async def test_servers_get_their_secrets_and_no_store_holds_them(
    served: Served, keys: dict[str, str], crm: FakeCrm
) -> None:
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-secrets"}) as client:
        digest = text_of(await client.call_tool("notes__token_digest", {}))
        await client.call_tool("crm__lookup", {"customer": "Grace Hopper"})
    assert digest == hashlib.sha256(NOTES_TOKEN.encode()).hexdigest()  # the stdio server's env
    assert crm.api_keys[-1] == CRM_KEY  # the HTTP server's header
    traces_of(served, "task_id = 'task-secrets'", count=2)
    controls = {"traces": "task-secrets", "payloads": "Grace Hopper", "audit_log": "task-secrets"}
    for table, control in controls.items():
        sql = "SELECT count(*) FILTER (WHERE CAST(t AS VARCHAR) LIKE '%{}%') AS n FROM {} AS t"
        (seen,) = rows_once_there(served, sql.format(control, table), f"no count of {table}")
        (leaked,) = rows_once_there(served, sql.format("-secret-", table), f"no count of {table}")
        assert (seen["n"] != 0, leaked["n"]) == (True, 0), table


# -- approvals ---------------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_an_approval_gated_call_waits_for_a_human(
    served: Served, keys: dict[str, str], notes_files: tuple[Path, Path], decision: str
) -> None:
    import anyio

    title = f"old-{decision}"
    outcome: dict[str, Any] = {}

    async def ask() -> None:
        async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": f"task-{decision}"}) as client:
            try:
                outcome["result"] = await client.call_tool("notes__delete_note", {"title": title})
            except MCPError as error:
                outcome["error"] = error

    async with anyio.create_task_group() as group:
        group.start_soon(ask)
        approval_id = await anyio.to_thread.run_sync(wait_for_held, served)
        assert not [c for c in notes_calls(notes_files) if c["arguments"].get("title") == title]
        done = await anyio.to_thread.run_sync(
            lambda: run_cli(served.data_dir, "approvals", decision, approval_id, "--reason", "checked")
        )
        assert done.returncode == 0, done.stderr
    reached = [c for c in notes_calls(notes_files) if c["arguments"].get("title") == title]
    (trace,) = traces_of(served, f"task_id = 'task-{decision}'")
    if decision == "approve":
        assert "Deleted" in text_of(outcome["result"])
        assert len(reached) == 1
        assert guard(trace)["mcp"] == {
            "decision": "approved",
            "verdict": "approval",
            "approval_id": approval_id,
        }
    else:
        assert outcome["error"].code == -32010 and "denied" in outcome["error"].message
        assert reached == []
        assert (trace["status"], trace["error_type"]) == ("blocked", "approval_denied")
    actions = rows_once_there(
        served, f"SELECT action FROM audit_log WHERE subject = '{approval_id}' ORDER BY seq", "no audit"
    )
    assert [row["action"] for row in actions][-1] == (
        "approval.granted" if decision == "approve" else "approval.denied"
    )


# -- screening ---------------------------------------------------------------------------


async def test_a_canary_pii_value_never_reaches_a_remote_server(
    served: Served, keys: dict[str, str], crm: FakeCrm
) -> None:
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-pii"}) as client:
        result = await client.call_tool("crm__lookup", {"customer": f"the customer at {CANARY_EMAIL}"})
    assert not result.is_error
    assert CANARY_EMAIL not in json.dumps(crm.calls)
    assert ("lookup", {"customer": "the customer at [EMAIL]"}) in crm.calls
    (trace,) = traces_of(served, "task_id = 'task-pii'")
    assert (trace["pii_redactions"], guard(trace)["pii"]) == (1, {"email": 1})
    stored = rows_once_there(
        served, f"SELECT request FROM payloads WHERE request_id = '{trace['request_id']}'", "no payload"
    )
    assert CANARY_EMAIL not in json.dumps(stored)


async def test_pii_toward_a_remote_server_set_to_block_is_refused(
    served: Served, keys: dict[str, str], crm: FakeCrm
) -> None:
    before = len(crm.calls)
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-pii-block"}) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("crm-strict__lookup", {"customer": CANARY_EMAIL})
        allowed = await client.call_tool("crm-strict__lookup", {"customer": "Ada Lovelace"})
    assert refused.value.code == -32010 and "personal data (email)" in refused.value.message
    assert "Ada Lovelace" in text_of(allowed)
    assert crm.calls[before:] == [("lookup", {"customer": "Ada Lovelace"})]
    refused_trace, _ = traces_of(served, "task_id = 'task-pii-block'", count=2)
    assert (refused_trace["status"], refused_trace["error_type"]) == ("blocked", "pii_blocked")


async def test_an_injection_in_a_result_is_flagged_and_withheld(
    served: Served, keys: dict[str, str], notes_files: tuple[Path, Path]
) -> None:
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-injection"}) as client:
        result = await client.call_tool("notes__poisoned_page", {"url": "https://example.org/notes"})
    assert result.is_error
    assert "withheld" in text_of(result) and "ignore all previous" not in text_of(result).lower()
    assert any(c["tool"] == "poisoned_page" for c in notes_calls(notes_files))  # it ran
    (trace,) = traces_of(served, "task_id = 'task-injection'")
    assert (trace["status"], trace["error_type"], trace["reason_code"]) == (
        "blocked",
        "injection_withheld",
        "risk-high-flagged",
    )
    assert trace["injection_score"] >= 0.7 and guard(trace)["injection"]["signals"]


# -- failures ----------------------------------------------------------------------------


async def test_a_server_answering_garbage_is_a_json_rpc_error(served: Served, keys: dict[str, str]) -> None:
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-garbage"}) as client:
        with pytest.raises(MCPError) as failed:
            await client.call_tool("notes__garble", {})
    assert failed.value.code == -32011
    (trace,) = traces_of(served, "task_id = 'task-garbage'")
    assert (trace["status"], trace["error_type"]) == ("error", "upstream_garbage")


async def test_a_server_that_keeps_failing_opens_its_breaker_and_tools_list_says_so(
    served: Served, keys: dict[str, str], notes_files: tuple[Path, Path]
) -> None:
    flaky_calls = notes_files[0].with_name("flaky-calls.jsonl")
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-breaker"}) as client:
        with pytest.raises(MCPError):
            await client.call_tool("flaky__garble", {})  # one failure opens this server's breaker
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        with pytest.raises(MCPError) as refused:
            await client.call_tool("flaky__read_note", {"title": "anything"})
    assert (listed["flaky__read_note"].description or "").startswith("[breaker open]")
    assert not (listed["notes__read_note"].description or "").startswith("[")
    assert refused.value.code == -32011 and "breaker is open" in refused.value.message
    assert [json.loads(line)["tool"] for line in flaky_calls.read_text().splitlines()] == ["garble"]
    assert "breaker open" in run_cli(served.data_dir, "mcp", "list").stdout


async def test_the_cost_per_outcome_counts_the_priced_tool_calls(
    served: Served, keys: dict[str, str]
) -> None:
    headers = {"X-Fleetdeck-Task": "task-priced", "X-Fleetdeck-Workflow": "priced-agent"}
    async with mcp_client(served, keys["agent"], headers) as client:
        for _ in range(2):
            assert not (await client.call_tool("notes__read_note", {"title": "groceries"})).is_error
    traces_of(served, "task_id = 'task-priced'", count=2)  # both priced calls stored
    body = {"task_id": "task-priced", "status": "resolved", "workflow_id": "priced-agent"}
    posted = httpx.post(f"{served.base_url}/outcomes", json=body, headers=served.auth, timeout=10)
    assert posted.status_code == 200, posted.text
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    deadline = time.monotonic() + 10
    while True:  # the outcome lands in a flush of its own: wait for it
        asked = {"name": "cost_per_outcome", "params": {"workflow": "priced-agent"}}
        rows = endpoint.query(asked).to_pylist()
        if (rows and rows[0]["resolved_tasks"]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    (row,) = rows
    assert (row["resolved_tasks"], row["total_cost_usd"], row["cost_per_outcome_usd"]) == (1, 0.5, 0.5)


def test_malformed_json_rpc_is_refused_in_json_rpc_and_traced(served: Served, keys: dict[str, str]) -> None:
    headers = {
        "Authorization": f"Bearer {keys['agent']}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "X-Fleetdeck-Task": "task-malformed",
    }
    url = f"{served.url}/mcp"
    not_json = httpx.post(url, content=b"{not json", headers=headers, timeout=10)
    no_name = httpx.post(
        url,
        json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"arguments": {}}},
        headers=headers,
    )
    unauthenticated = httpx.post(url, content=b"{}", headers={**headers, "Authorization": "Bearer nope"})
    for answer in (not_json, no_name, unauthenticated):
        assert answer.status_code < 500, answer.text
        assert "error" in answer.json() and answer.json()["jsonrpc"] == "2.0", answer.text
    assert unauthenticated.status_code == 401
    assert not_json.json()["error"]["code"] == types.PARSE_ERROR
    traces = traces_of(served, "task_id = 'task-malformed'", count=3)
    assert {t["error_type"] for t in traces} == {"malformed_request", "invalid_params", "invalid_api_key"}


async def test_killing_the_stdio_server_mid_call_errs_restarts_and_recovers(
    served: Served, keys: dict[str, str], notes_files: tuple[Path, Path]
) -> None:
    import anyio

    calls, pids = notes_files
    pid = int(pids.read_text().split()[-1])
    outcome: dict[str, Any] = {}

    async def ask() -> None:
        async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-kill"}) as client:
            try:
                await client.call_tool("notes__wait", {"label": "kill-me"})
            except MCPError as error:
                outcome["error"] = error

    with anyio.fail_after(20):  # the notes server's timeout_s: the error comes before it
        async with anyio.create_task_group() as group:
            group.start_soon(ask)
            await anyio.to_thread.run_sync(_wait_for_call, calls, "kill-me")
            os.kill(pid, signal.SIGKILL)
    assert outcome["error"].code == -32011 and "went away" in outcome["error"].message
    async with mcp_client(served, keys["agent"], {"X-Fleetdeck-Task": "task-kill"}) as client:
        result = await client.call_tool("notes__read_note", {"title": "after the restart"})
    assert "buy milk" in text_of(result)
    assert int(pids.read_text().split()[-1]) != pid  # a new process answered
    failed, recovered = traces_of(served, "task_id = 'task-kill'", count=2)
    assert (failed["error_type"], recovered["status"]) == ("connection_lost", "ok")


def _wait_for_call(calls: Path, label: str) -> None:
    deadline = time.monotonic() + 20
    while label not in (calls.read_text() if calls.exists() else ""):
        assert time.monotonic() < deadline, f"the server never received the {label} call"
        threading.Event().wait(0.02)


# -- the record --------------------------------------------------------------------------


def test_one_trace_and_one_audit_entry_per_call_and_the_chain_verifies(served: Served) -> None:
    traces = rows_once_there(
        served, "SELECT request_id FROM traces WHERE operation = 'execute_tool'", "no traces"
    )
    entries = rows_once_there(
        served,
        "SELECT json_extract_string(payload, '$.request_id') AS request_id FROM audit_log "
        "WHERE action = 'mcp.tool_call'",
        "no audit entries",
    )
    traced, audited = ([str(row["request_id"]) for row in rows] for rows in (traces, entries))
    assert sorted(traced) == sorted(audited)
    verified = run_cli(served.data_dir, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_mcp_list_prints_the_servers(served: Served) -> None:
    listed = run_cli(served.data_dir, "mcp", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(line.startswith("notes") and "stdio" in line and "up" in line for line in lines), listed.stdout
    assert any(line.startswith("crm") and "remote" in line for line in lines), listed.stdout
    assert (served.data_dir / "mcp" / "notes.stderr.log").exists()  # not the console's screen
