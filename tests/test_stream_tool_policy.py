"""The tool policy on streamed answers, through a real `fleetdeck serve` and the official openai
SDK with `stream=True`: a fake upstream whose tool-call deltas are split across chunks and
interleave by index, and the local model (llama.cpp). The SDK reads each stream through a
transport that also keeps the response's raw bytes, so what never reached the client is
checked on the wire, not only on what the SDK made of it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, rows_once_there, trace_of
from gateway_process import run_cli as cli

from console.gateway.admin import AdminEndpoint

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", prices: {{m: {{input: 1, output: 1}}}}}}
  local: {{kind: local, model_path: default, model_name: smollm2-135m}}
routes:
  - intent: refunds
    primary: lab/m
    max_retries: 0
    tools: {{allow: [orders.get], approval: [payments.issue_refund]}}
  - intent: local_refunds
    primary: local/smollm2-135m
    max_retries: 0
    timeouts: {{first_token_s: 60, total_s: 120}}
    tools: {{allow: [orders.get], approval: [payments.issue_refund]}}
  - intent: refunds_in_a_hurry
    primary: lab/m
    max_retries: 0
    timeouts: {{total_s: 2}}
    tools: {{allow: [orders.get], approval: [payments.issue_refund]}}
  - intent: plain
    primary: lab/m
    max_retries: 0
default_route: refunds
"""
ASK = "refund order 42 to the card ending 4242"
LAST_WORD = ASK.rsplit(maxsplit=1)[-1]
KEEP_ALIVE = b": keep-alive\n\n"
WITHHELD = "Tool calls withheld by Fleetdeck"
pytestmark = pytest.mark.usefixtures("clean_upstream")


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url)


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    return {"FLEETDECK_STREAM_KEEP_ALIVE_S": "0.05"}  # a held call's stream says it is alive often


# --- the client ------------------------------------------------------------------------------------


class Wire(httpx.HTTPTransport):
    """The SDK's transport, keeping the response's raw bytes as they arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = bytearray()
        self.changed = threading.Condition()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, self),
            extensions=response.extensions,
            request=request,
        )

    def received(self, part: bytes) -> None:
        with self.changed:
            self.raw.extend(part)
            self.changed.notify_all()

    def wait_for_keep_alives(self, count: int, timeout_s: float = 60) -> bytes:
        """The bytes so far, once `count` keep-alive comments came (a call is held)."""
        with self.changed:
            arrived = self.changed.wait_for(lambda: self.raw.count(KEEP_ALIVE) >= count, timeout_s)
            assert arrived, f"no {count} keep-alives: {bytes(self.raw)!r}"
            return bytes(self.raw)


class _Tee(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, wire: Wire) -> None:
        self.inner, self.wire = inner, wire

    def __iter__(self) -> Iterator[bytes]:
        for part in self.inner:
            self.wire.received(part)
            yield part

    def close(self) -> None:
        self.inner.close()


@dataclass
class Streamed:
    """A stream as the SDK gave it to the client, put together, and its raw bytes."""

    request_id: str
    raw: bytes
    content: str = ""
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # "content" and "tool_call", as chunks came

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [self.calls[index] for index in sorted(self.calls)]


def tool(name: str) -> dict[str, Any]:
    parameters = {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def stream(served: Served, route: str, wire: Wire | None = None, **body: Any) -> Streamed:
    """One streamed chat completion through the SDK; `wire` keeps its bytes."""
    wire = wire or Wire()
    client = served.client(http_client=httpx.Client(transport=wire, timeout=120))
    messages = [{"role": "user", "content": ASK}]
    chunks = client.chat.completions.create(
        model=f"route:{route}", messages=messages, stream=True, max_tokens=40, **body
    )
    request_id = chunks.response.headers["x-fleetdeck-request-id"]
    got = Streamed(request_id, b"")
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.delta.content:
                got.content += choice.delta.content
                got.order.append("content")
            for delta in choice.delta.tool_calls or ():
                got.order.append("tool_call")
                call = got.calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = call["id"] or delta.id
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
            if choice.finish_reason:
                got.finish.append(choice.finish_reason)
    got.raw = bytes(wire.raw)
    return got


def offering(*names: str, parallel: bool = False) -> dict[str, Any]:
    """Tools offered and the fake's cue: a named call, or every tool ("required", parallel)."""
    if parallel:
        return {"tools": [tool(n) for n in names], "tool_choice": "required", "parallel_tool_calls": True}
    (name,) = names
    return {"tools": [tool(name)], "tool_choice": {"type": "function", "function": {"name": name}}}


def fake_arguments(name: str) -> str:
    return orjson.dumps({"input": ASK, "tool": name}).decode()


def on_the_wire(text: str) -> bytes:
    """How a string appears inside an SSE event's JSON."""
    return orjson.dumps(text)[1:-1]


def held_and_decided(served: Served, route: str, decide: str, **body: Any) -> tuple[Streamed, str, bytes]:
    """Stream a call that needs approval; decide it with `fleetdeck approvals` while the stream waits.

    Returns the stream, the approval id, and the bytes the client had when the call was held.
    """
    wire, got = Wire(), []
    asking = threading.Thread(target=lambda: got.append(stream(served, route, wire, **body)))
    asking.start()
    before = wire.wait_for_keep_alives(3)  # held, and still said to be alive while it waits
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    (held,) = endpoint.call("approvals", {"action": "list"})["pending"]
    assert held["tool"] == "payments.issue_refund"
    done = cli(served.data_dir, "approvals", decide, held["approval_id"], "--reason", "checked the order")
    assert done.returncode == 0, done.stderr
    asking.join(timeout=120)
    assert got, "the stream did not end"
    return got[0], str(held["approval_id"]), before


def decisions(served: Served, approval_id: str) -> list[dict[str, Any]]:
    sql = (
        "SELECT action, actor, actor_kind, payload FROM audit_log "
        f"WHERE subject = '{approval_id}' AND action <> 'approval.requested' ORDER BY seq"
    )
    return rows_once_there(served, sql, f"no decision on {approval_id} was audited")


def guard_results(served: Served, request_id: str) -> dict[str, Any]:
    trace = trace_of(served, request_id)
    found: dict[str, Any] = orjson.loads(str(trace["guard_results"]))
    return found


# --- a fake upstream: tool-call deltas split across chunks, interleaved ------------------------------


def test_allowed_calls_pass_whole_and_a_disallowed_call_never_reaches_the_client(served: Served) -> None:
    got = stream(served, "refunds", **offering("orders.get", "shell.exec", parallel=True))

    assert got.tool_calls == [
        {"id": got.calls[0]["id"], "name": "orders.get", "arguments": fake_arguments("orders.get")}
    ]
    assert got.finish == ["tool_calls"]
    assert got.content == f"{ASK}\n{WITHHELD} (1 not allowed)."
    assert got.order == ["content"] * len(ASK.split()) + ["tool_call", "content"]  # text, call, note
    assert b"shell.exec" not in got.raw
    assert on_the_wire(fake_arguments("shell.exec")) not in got.raw
    assert got.raw.endswith(b"data: [DONE]\n\n")

    trace = trace_of(served, got.request_id)
    assert trace["reason_code"] == "risk-high-flagged"
    assert trace["finish_reasons"] == ["tool_calls"]
    assert orjson.loads(str(trace["tool_calls"])) == [{"id": got.calls[0]["id"], "name": "orders.get"}]
    assert guard_results(served, got.request_id)["tools"] == {
        "orders.get": "allowed",
        "shell.exec": "not allowed",
    }
    sql = f"SELECT payload FROM audit_log WHERE action = 'guard.flagged' AND subject = '{got.request_id}'"
    (flagged,) = rows_once_there(served, sql, "the flag was not audited")
    assert orjson.loads(str(flagged["payload"]))["tools"] == ["shell.exec"]
    # The stored response is what the client received, as for a JSON answer.
    sql = f"SELECT response FROM payloads WHERE request_id = '{got.request_id}'"
    (stored,) = rows_once_there(served, sql, "no payload was kept")
    (choice,) = orjson.loads(str(stored["response"]))["choices"]
    assert [call["function"]["name"] for call in choice["message"]["tool_calls"]] == ["orders.get"]
    assert choice["message"]["content"] == got.content


def test_when_no_call_is_left_the_finish_reason_is_stop(served: Served) -> None:
    got = stream(served, "refunds", **offering("shell.exec"))
    assert got.tool_calls == [] and got.finish == ["stop"]
    assert got.content == f"{WITHHELD} (1 not allowed)."
    assert b"shell.exec" not in got.raw and b"tool_calls" not in got.raw and b"arguments" not in got.raw
    assert trace_of(served, got.request_id)["finish_reasons"] == ["stop"]


def test_a_held_call_is_released_on_approval_after_the_text_streamed(served: Served) -> None:
    body = offering("orders.get", "payments.issue_refund", parallel=True)
    got, approval_id, before = held_and_decided(served, "refunds", "approve", **body)

    # While the call was held the client had the text, and no call yet: they go out in order.
    assert on_the_wire(LAST_WORD) in before and b"tool_calls" not in before
    assert [(c["name"], c["arguments"]) for c in got.tool_calls] == [
        ("orders.get", fake_arguments("orders.get")),
        ("payments.issue_refund", fake_arguments("payments.issue_refund")),
    ]
    assert got.finish == ["tool_calls"] and got.content == ASK
    (decision,) = decisions(served, approval_id)
    assert decision["action"] == "approval.granted"
    assert decision["actor_kind"] == "human" and "@" in str(decision["actor"])
    assert orjson.loads(str(decision["payload"]))["reason"] == "checked the order"
    tools = guard_results(served, got.request_id)["tools"]
    assert tools == {"orders.get": "allowed", "payments.issue_refund": "approved"}


def test_a_held_call_is_refused_on_denial(served: Served) -> None:
    body = offering("orders.get", "payments.issue_refund", parallel=True)
    got, approval_id, _ = held_and_decided(served, "refunds", "deny", **body)

    assert [c["name"] for c in got.tool_calls] == ["orders.get"]
    assert got.finish == ["tool_calls"]
    assert got.content == f"{ASK}\n{WITHHELD} (payments.issue_refund: denied)."
    assert on_the_wire(fake_arguments("payments.issue_refund")) not in got.raw
    (decision,) = decisions(served, approval_id)
    assert decision["action"] == "approval.denied" and decision["actor_kind"] == "human"


def test_an_undecided_call_expires_at_the_deadline_and_the_stream_still_ends_cleanly(
    served: Served, upstream: FakeOpenAI
) -> None:
    upstream.push(Fault(stall_at=-2, stall_s=2.5, stream=True))  # the usage chunk comes late
    got = stream(served, "refunds_in_a_hurry", **offering("payments.issue_refund"))
    # Nobody decided: the route's deadline (total_s 2) did. The wait was the human's, not the
    # upstream's: the rest of the stream (its usage, after the deadline) still came through.
    assert got.tool_calls == [] and got.finish == ["stop"]
    assert got.content == f"{WITHHELD} (payments.issue_refund: expired)."
    assert got.raw.count(KEEP_ALIVE) >= 3 and got.raw.endswith(b"data: [DONE]\n\n")
    sql = (
        "SELECT actor, actor_kind, payload FROM audit_log WHERE action = 'approval.denied' "
        f"AND payload->>'request_id' = '{got.request_id}'"
    )
    (expired,) = rows_once_there(served, sql, "the expiry was not audited")
    assert (expired["actor"], expired["actor_kind"]) == ("gateway", "system")
    trace = trace_of(served, got.request_id)
    assert trace["status"] == "ok" and trace["input_tokens"] > 0  # priced from the upstream's usage


def test_a_stream_cut_before_its_calls_are_complete_sends_none(served: Served, upstream: FakeOpenAI) -> None:
    words = len(ASK.split())
    upstream.push(Fault(cut_after=1 + words + 3, stream=True))  # the role, the text, 3 of the call's deltas
    wire = Wire()
    with pytest.raises(openai.APIError):
        stream(served, "refunds", wire, **offering("orders.get", parallel=True))
    assert on_the_wire(LAST_WORD) in wire.raw  # the text went out
    assert b"orders.get" not in wire.raw and b"[DONE]" not in wire.raw and b'"error"' in wire.raw


@pytest.mark.parametrize(
    ("route", "body"),
    [
        pytest.param("refunds", {}, id="a route with a tool policy"),
        pytest.param("refunds", {"tools": [tool("orders.get")], "tool_choice": "auto"}, id="tools offered"),
        pytest.param("plain", {}, id="a route without one"),
    ],
)
@pytest.mark.parametrize("usage", [True, False], ids=["with usage", "without usage"])
def test_a_text_only_stream_is_relayed_byte_for_byte(
    served: Served, upstream: FakeOpenAI, route: str, body: dict[str, Any], usage: bool
) -> None:
    if usage:
        body = {**body, "stream_options": {"include_usage": True}}
    got = stream(served, route, **body)
    # The gateway relays the upstream's events as they were (it always asks for the usage
    # chunk, and passes it on only to a client that asked for it too).
    events = [event + b"\n\n" for event in bytes(upstream.last_request.sent).split(b"\n\n") if event]
    usage_event = [e for e in events if b'"choices":[]' in e]
    assert len(usage_event) == 1 and len(events) > 4
    expected = b"".join(e for e in events if usage or e not in usage_event)
    assert got.raw == expected
    assert got.content == ASK and got.finish == ["stop"]


# --- the local model (llama.cpp): its streamed tool calls, through the same policy ---------------------


def test_the_local_model_streams_an_allowed_call_whole(served: Served) -> None:
    got = stream(served, "local_refunds", **offering("orders.get"))
    (call,) = got.tool_calls
    assert call["name"] == "orders.get" and call["id"]
    assert "order" in orjson.loads(call["arguments"])
    assert got.finish == ["tool_calls"]
    assert got.raw.count(b'"tool_calls":[') == 1  # released in one delta, once complete


def test_the_local_models_disallowed_call_never_reaches_the_client(served: Served) -> None:
    got = stream(served, "local_refunds", **offering("shell.exec"))
    assert got.tool_calls == [] and got.finish == ["stop"]
    assert got.content == f"{WITHHELD} (1 not allowed)."
    assert b"shell.exec" not in got.raw and b"tool_calls" not in got.raw and b"arguments" not in got.raw
    assert guard_results(served, got.request_id)["tools"] == {"shell.exec": "not allowed"}


@pytest.mark.parametrize("decide", ["approve", "deny"])
def test_the_local_models_held_call_is_released_on_approval_and_refused_on_denial(
    served: Served, decide: str
) -> None:
    got, approval_id, before = held_and_decided(
        served, "local_refunds", decide, **offering("payments.issue_refund")
    )
    assert b"tool_calls" not in before
    (decision,) = decisions(served, approval_id)
    assert decision["actor_kind"] == "human"
    if decide == "approve":
        (call,) = got.tool_calls
        assert call["name"] == "payments.issue_refund" and "order" in orjson.loads(call["arguments"])
        assert got.finish == ["tool_calls"] and decision["action"] == "approval.granted"
    else:
        assert got.tool_calls == [] and got.finish == ["stop"]
        assert got.content == f"{WITHHELD} (payments.issue_refund: denied)."
        assert b"arguments" not in got.raw and decision["action"] == "approval.denied"


def test_a_client_that_leaves_while_its_call_is_held_takes_the_call_off_the_queue(served: Served) -> None:
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    body = {"model": "route:refunds", "messages": [{"role": "user", "content": ASK}], "stream": True}
    body |= offering("payments.issue_refund")
    url = f"{served.base_url}/chat/completions"
    with httpx.stream("POST", url, json=body, headers=served.auth, timeout=60) as response:
        request_id = response.headers["x-fleetdeck-request-id"]
        lines = response.iter_lines()
        assert ": keep-alive" in lines  # read up to the first keep-alive: the call is held
        assert len(endpoint.call("approvals", {"action": "list"})["pending"]) == 1
    sql = f"SELECT status, error_type, http_status FROM traces WHERE request_id = '{request_id}'"
    (trace,) = rows_once_there(served, sql, "the stream left no trace")
    assert (trace["status"], trace["error_type"]) == ("partial", "client_disconnected")
    assert trace["http_status"] == 499
    sql = (
        "SELECT actor, actor_kind, payload FROM audit_log WHERE action = 'approval.withdrawn' "
        f"AND payload->>'request_id' = '{request_id}'"
    )
    (withdrawn,) = rows_once_there(served, sql, "the withdrawal was not audited")
    assert (withdrawn["actor"], withdrawn["actor_kind"]) == ("gateway", "system")
    assert endpoint.call("approvals", {"action": "list"})["pending"] == []  # taken off before it was audited
