"""Contract fuzzing: schemathesis drives every operation of docs/openapi.json against a real
`fleetdeck serve` (the local model, a fake OpenAI and a fake Anthropic upstream, an MCP server),
with bodies that fit the schema and bodies that break it.

Properties, for every request:
- no 5xx of the gateway's own: a 502/503/504 only from an operation that calls an upstream;
- every error in the envelope of the caller's protocol (OpenAI's, Anthropic's under
  /v1/messages, JSON-RPC's at /mcp), and the answer fits the document (schemathesis'
  response_schema_conformance);
- a stream ends with its protocol's last event or its error event;
and, once the instance has stopped: exactly one trace per request to /v1/ and to /mcp, and
the audit chain verifies.

Bounded for `make test`: FUZZ_EXAMPLES (default 10) examples per operation and mode, a
fixed seed (derandomize), no deadline. `FLEETDECK_FUZZ_EXAMPLES=200` for a soak.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import REPO, Served, fleetdeck_serve
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from console.engine import Engine
from console.gateway.admin import AdminEndpoint
from console.gateway.openapi import document, document_bytes
from console.settings import Settings

EXAMPLES = int(os.environ.get("FLEETDECK_FUZZ_EXAMPLES", "10"))
# bounded: the failing example as found (each shrink step is a request to a live gateway)
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if EXAMPLES > 10 else [])
# A state machine's steps follow the live gateway's answers (ids it made, an upstream fault
# now and then), which a replay cannot reproduce: generated runs only, and a bounded number of
# them, since hypothesis calls a prefix it meets twice with different steps a flaky strategy.
STATEFUL_PHASES = [Phase.generate]
STATEFUL_EXAMPLES = 5
UPSTREAM_KEY = "sk-ant-fuzz"
SCHEMA = schemathesis.openapi.from_dict(document())
OPERATIONS = {op.label: op for op in (result.ok() for result in SCHEMA.get_all_operations())}
NO_INPUT = {"GET /v1/models", "GET /healthz", "GET /openapi.json"}  # nothing to break: positive only
CASES = [
    (label, mode)
    for label in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or label not in NO_INPUT
]
MODEL_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages")
UPSTREAM_STATUSES = (502, 503, 504)  # an upstream's failure, passed on in the caller's envelope
MODELS = ("route:support", "lab/m", "route:claude", "route:general", None)
LOCAL = "route:general"  # the local model: few tokens, it runs on the test's CPU
LOCAL_BODY_BYTES = 1500
SENT: Counter[str] = Counter()  # requests that reached the gateway, by kind ("v1", "mcp")

POLICY = """
providers:
  local: {{kind: local, model_path: default, model_name: smollm2-135m}}
  lab: {{kind: openai_compat, base_url: "{lab}", models: [m], prices: {{m: {{input: 1, output: 2}}}}}}
  claude: {{kind: anthropic, base_url: "{claude}", secret: claude, models: [claude-x]}}
routes:
  - {{intent: support, primary: lab/m, max_retries: 0, timeouts: {{total_s: 10}}}}
  - {{intent: claude, primary: claude/claude-x, max_retries: 0, timeouts: {{total_s: 10}}}}
  - {{intent: general, primary: local/smollm2-135m, max_retries: 0, timeouts: {{total_s: 30}}}}
default_route: support
mcp_servers:
  notes:
    command: {python}
    args: ["{script}"]
    env: {{NOTES_CALLS: "{calls}", NOTES_PIDS: "{pids}"}}
    timeout_s: 10
    approval_timeout_s: 30
mcp_access:
  - allow: ["notes__*"]
    approval: [notes__delete_note]
handoffs:
  review:
    schema: {{type: object}}
    gate: {{kind: approval, deadline_s: 30}}
"""


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI, claude: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> str:
    notes = tmp_path_factory.mktemp("notes")
    upstream.fail_ratio(0.05, Fault(status=503), seed=7)  # a faulty upstream now and then
    claude.fail_ratio(0.05, Fault(status=529), seed=7)
    return POLICY.format(
        lab=upstream.base_url,
        claude=claude.base_url,
        python=sys.executable,
        script=REPO / "tests" / "fakes" / "mcp_notes.py",
        calls=notes / "calls.jsonl",
        pids=notes / "pids.txt",
    )


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    return {"FLEETDECK_SECRET_CLAUDE": UPSTREAM_KEY}


@pytest.fixture(scope="module")
def data_dir(data_dir: Path) -> Iterator[Path]:
    yield data_dir
    # `served` has stopped: its store is ours to open
    with Engine(Settings(data_dir=data_dir)) as engine:
        cur = engine.db.cursor()
        (v1,) = cur.execute(
            "SELECT count(*) FROM traces WHERE protocol IS DISTINCT FROM 'mcp'"
        ).fetchone() or (0,)
        (mcp,) = cur.execute("SELECT count(*) FROM traces WHERE protocol = 'mcp'").fetchone() or (0,)
        verification = engine.verify_audit()
    assert v1 == SENT["v1"], f"{v1} traces for {SENT['v1']} requests to /v1/"
    assert mcp == SENT["mcp"], f"{mcp} traces for {SENT['mcp']} requests to /mcp"
    assert verification.ok, verification.report()


@pytest.fixture(scope="module")
def served(data_dir: Path, policy: str, served_env: dict[str, str]) -> Iterator[Served]:
    with fleetdeck_serve(data_dir, policy, served_env) as instance:
        yield instance


@pytest.fixture(scope="module")
def admin_token(served: Served) -> str:
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    return endpoint.token


# --- a case made ready to send ----------------------------------------------------------------

AUTH = st.sampled_from(["key"] * 8 + ["none", "wrong"])
MODEL = st.sampled_from((*MODELS, "generated"))
TOOL = st.sampled_from(["notes__read_note", "notes__add", "nope__tool", "generated"])


def headers_for(case: Any, served: Served, admin_token: str, auth: str) -> dict[str, str]:
    path = case.operation.path
    token = admin_token if path.startswith("/_admin/") else served.key
    headers = {"Authorization": f"Bearer {token}"} if auth == "key" else {}
    if auth == "wrong":
        headers = {"Authorization": "Bearer fd-dev-not-a-key"}
    if path.startswith("/v1/messages"):
        headers = {"x-api-key": headers.pop("Authorization", "").removeprefix("Bearer "), **headers}
        headers["anthropic-version"] = "2023-06-01"
    if path == "/mcp":
        headers["Accept"] = "application/json, text/event-stream"
    return headers


def steer(case: Any, model: str, tool: str) -> None:
    """Point a generated body at a model the policy serves (or leave it as generated), keep the
    local model's answers short, and name the MCP server's tools now and then."""
    body = case.body
    if not isinstance(body, dict):
        return
    path = case.operation.path
    if model == LOCAL and len(json.dumps(body)) > LOCAL_BODY_BYTES:  # json: ints past 64 bits too
        model = "route:support"  # a long prompt takes the local model seconds on a shared CPU
    if path in (*MODEL_PATHS, "/v1/messages/count_tokens") and model != "generated":
        body.pop("model", None)
        if model is not None:
            body["model"] = model
        if model == LOCAL:
            for name in ("max_tokens", "max_output_tokens", "max_completion_tokens"):
                if isinstance(body.get(name), int) and body[name] > 4:
                    body[name] = 4
            if path != "/v1/messages" and "max_tokens" not in body:
                body.setdefault("max_completion_tokens" if "messages" in body else "max_output_tokens", 4)
    if path == "/mcp" and tool != "generated" and isinstance(body.get("params"), dict | None):
        body.update(method="tools/call", params={"name": tool, "arguments": {"title": "t", "a": 1, "b": 2}})


# --- the properties ---------------------------------------------------------------------------


def check_answer(case: Any, response: Any) -> None:
    path, status = case.operation.path, response.status_code
    if status >= 500:
        assert status in UPSTREAM_STATUSES and path in MODEL_PATHS, (status, response.text)
    if path == "/mcp":
        check_json_rpc(response)
    elif status >= 400:
        check_envelope(path, response)
    elif content_type(response).startswith("text/event-stream"):
        check_stream_end(path, response.text)


def content_type(response: Any) -> str:
    found = response.headers.get("content-type") or [""]
    return str(found[0])


def check_envelope(path: str, response: Any) -> None:
    body = response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        return
    error = body["error"]
    assert {"message", "type", "param", "code"} <= error.keys(), body
    assert isinstance(error["message"], str) and error["message"]


def check_json_rpc(response: Any) -> None:
    if response.status_code == 202:  # a notification: nothing to answer
        return
    body = response.json()
    assert body.get("jsonrpc") == "2.0", body
    if response.status_code >= 400:
        assert isinstance(body["error"]["code"], int) and body["error"]["message"], body
    else:
        assert ("result" in body) != ("error" in body), body


def check_stream_end(path: str, text: str) -> None:
    """The last event: OpenAI's `[DONE]`, the Responses API's completed or failed event,
    Anthropic's message_stop; else the protocol's error event."""
    last = text.rstrip().rsplit("\n\n", 1)[-1]
    if path == "/v1/messages":
        assert last.startswith(("event: message_stop", "event: error")), last
    elif path == "/v1/responses":
        assert last.startswith(("event: response.completed", "event: response.failed", "event: error")), last
    else:
        assert last == "data: [DONE]" or '"error"' in last, last


def send(case: Any, served: Served, headers: dict[str, str]) -> Any:
    case.headers = {}  # the security schemes' generated headers: ours replace them
    response = case.call(base_url=served.url, headers=headers, timeout=60)
    path = case.operation.path
    SENT["v1" if path.startswith("/v1/") else "mcp" if path == "/mcp" else "other"] += 1
    return response


# --- the tests --------------------------------------------------------------------------------


def test_the_served_document_is_the_committed_one(served: Served) -> None:
    served_doc = httpx.get(f"{served.url}/openapi.json", timeout=10)
    assert served_doc.status_code == 200
    committed = (REPO / "docs" / "openapi.json").read_bytes()
    assert served_doc.content == committed == document_bytes(), (
        "docs/openapi.json is stale: python -m console.gateway.openapi docs/openapi.json"
    )


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label} {mode.value}" for label, mode in CASES])
def test_every_operation_keeps_the_contract(
    served: Served, admin_token: str, label: str, mode: GenerationMode
) -> None:
    @settings(
        max_examples=EXAMPLES,
        phases=PHASES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=OPERATIONS[label].as_strategy(mode), auth=AUTH, model=MODEL, tool=TOOL)
    def fuzz(case: Any, auth: str, model: str, tool: str) -> None:
        steer(case, model, tool)
        headers = headers_for(case, served, admin_token, auth)
        response = send(case, served, headers)
        check_answer(case, response)
        case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])

    fuzz()


# --- stateful: previous_response_id and the stored responses ---------------------------------


def test_stored_responses_follow_their_links(served: Served, admin_token: str) -> None:
    """createResponse's links: retrieve, list input items, delete, continue with previous_response_id."""
    machine = SCHEMA.include(path_regex="^/v1/responses").as_state_machine()

    class Responses(machine):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            steer(case, "route:support", "generated")
            return {
                "base_url": served.url,
                "headers": headers_for(case, served, admin_token, "key"),
                "timeout": 60,
            }

        def call(self, case: Any, **kwargs: Any) -> Any:
            case.headers = {}
            response = case.call(**kwargs)
            SENT["v1"] += 1
            return response

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            check_answer(case, response)
            case.validate_response(response, checks=[response_schema_conformance])

    Responses.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=5,
            phases=STATEFUL_PHASES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )


# --- stateful: a handoff held by an approval gate, decided through the admin API -------------


def test_held_handoffs_follow_their_links_to_a_decision(served: Served, admin_token: str) -> None:
    """submitHandoff's 202 links: read it, approve or deny it by its approval id (admin API)."""
    names = {"submitHandoff", "readHandoff", "admin_approvals"}
    machine = SCHEMA.include(operation_id=list(names)).as_state_machine()

    class Handoffs(machine):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            if case.operation.path == "/v1/handoffs" and isinstance(case.body, dict):
                case.body.update(contract="review", task_id="fuzz-handoffs")  # its gate holds it
                case.body.pop("provenance", None)
            return {
                "base_url": served.url,
                "headers": headers_for(case, served, admin_token, "key"),
                "timeout": 60,
            }

        def call(self, case: Any, **kwargs: Any) -> Any:
            case.headers = {}
            response = case.call(**kwargs)
            SENT["v1" if case.operation.path.startswith("/v1/") else "other"] += 1
            return response

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            check_answer(case, response)
            case.validate_response(response, checks=[response_schema_conformance])

    Handoffs.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=4,
            phases=STATEFUL_PHASES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_a_held_handoff_approved_through_the_admin_api_is_accepted(served: Served, admin_token: str) -> None:
    """The links the state machine follows, once by hand."""
    held = httpx.post(
        f"{served.url}/v1/handoffs",
        json={"contract": "review", "task_id": "fuzz-by-hand", "payload": {"ok": True}},
        headers=served.auth,
    )
    assert held.status_code == 202, held.text
    admin = {"Authorization": f"Bearer {admin_token}"}
    decided = httpx.post(
        f"{served.url}/_admin/approvals",
        json={"action": "approve", "approval_id": held.json()["gate"]["approval_id"]},
        headers=admin,
    )
    assert decided.status_code == 200, decided.text
    read = httpx.get(
        f"{served.url}/v1/handoffs/{held.json()['id']}", params={"wait": 30}, headers=served.auth
    )
    SENT["v1"] += 2
    assert read.json()["status"] == "accepted", read.text


def test_a_continued_response_sees_the_stored_conversation(served: Served, upstream: FakeOpenAI) -> None:
    """The link the state machine follows, once by hand: the continuation's input items hold both turns."""
    upstream.clear_faults()
    first = httpx.post(
        f"{served.url}/v1/responses", json={"model": "route:support", "input": "one"}, headers=served.auth
    )
    SENT["v1"] += 1
    second = httpx.post(
        f"{served.url}/v1/responses",
        json={"model": "route:support", "input": "two", "previous_response_id": first.json()["id"]},
        headers=served.auth,
    )
    items = httpx.get(
        f"{served.url}/v1/responses/{second.json()['id']}/input_items",
        params={"order": "asc"},
        headers=served.auth,
    )
    SENT["v1"] += 2
    texts = [
        part["text"]
        for item in items.json()["data"]
        if item.get("type") == "message"
        for part in item["content"]
    ]
    assert texts[0] == "one" and texts[-1] == "two", orjson.dumps(items.json())
