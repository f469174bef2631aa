"""Tiers through a real `fleetdeck serve`: the small tier first, the large one when a check fails.

Two fake upstreams stand for the tiers; they echo the user's message, so what the message
says decides whether the small tier's answer passes the cheap checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, create_key, fleetdeck_serve, stored_traces, trace_of

from console.gateway import escalation
from console.policy import ToolPolicy

POLICY = """
providers:
  local: {{kind: local}}
  small: {{kind: openai_compat, base_url: {small}, prices: {{mini: {{input: 1.0, output: 2.0}}}}}}
  big: {{kind: openai_compat, base_url: {big}, prices: {{gpt: {{input: 10.0, output: 20.0}}}}}}
classifier: {{model: local/smollm2-135m}}
routes:
  - intent: reply
    tier: small
    primary: small/mini
    max_retries: 0
    timeouts: {{total_s: 10}}
    escalation: {{large: big/gpt}}
    context_budget_tokens: 200
    match: {{keywords: [reply], tools: [payments.issue_refund]}}
  - intent: big_only
    tier: large
    primary: big/gpt
    max_retries: 0
  - intent: docs
    primary: small/mini
    fallback: [big/gpt]
    context_budget_tokens: 20
  - intent: docs_alone
    primary: small/mini
    context_budget_tokens: 20
default_route: docs
"""
CALM = "Thanks, the parcel arrived and everything works."
HEDGING = "I'm not sure what the total on this invoice is."
MAX_TOKENS = 50


sent: list[httpx.Response] = []  # what the test sent to its `gateway`


@pytest.fixture(scope="module")
def policy(upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> str:
    small, big = upstreams
    return POLICY.format(small=small.base_url, big=big.base_url)


@pytest.fixture
def gateway_dir(gateway_dir: Path) -> Iterator[Path]:
    sent.clear()
    yield gateway_dir
    # `gateway` has stopped: its store can be opened
    assert len(stored_traces(gateway_dir, "request_id")) == len(sent), "one trace per request"


def chat(served: Served, text: str, model: str | None = "route:reply", **extra: object) -> httpx.Response:
    body: dict[str, object] = {
        "messages": [{"role": "user", "content": text}],
        "max_tokens": MAX_TOKENS,
        **extra,
    }
    if model is not None:
        body["model"] = model
    response = httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30)
    sent.append(response)
    return response


def routing_of(trace: dict[str, object]) -> dict[str, object]:
    found: dict[str, object] = orjson.loads(str(trace["guard_results"]))["routing"]
    return found


def test_an_answer_that_passes_the_checks_stays_on_the_small_tier(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    small, big = upstreams
    response = chat(gateway, CALM)
    assert response.status_code == 200
    assert response.headers["x-fleetdeck-model"] == "small/mini"
    assert response.headers["x-fleetdeck-reason"] == "cost-tier-downgrade"
    assert (small.request_count, big.request_count) == (1, 0)
    trace = trace_of(gateway, response.headers["x-fleetdeck-request-id"])
    assert trace["tier"] == "small" and trace["attempts"] == 1


def test_a_hedging_answer_escalates_and_the_trace_pays_for_both(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    small, big = upstreams
    response = chat(gateway, HEDGING)
    assert response.status_code == 200
    assert response.headers["x-fleetdeck-model"] == "big/gpt"
    assert response.headers["x-fleetdeck-reason"] == "escalation-check-failed"
    assert (small.request_count, big.request_count) == (1, 1)
    trace = trace_of(gateway, response.headers["x-fleetdeck-request-id"])
    log = orjson.loads(str(trace["attempt_log"]))
    assert [(a["provider"], a["status"]) for a in log] == [("small", "ok"), ("big", "ok")]
    assert trace["tier"] == "large" and trace["attempts"] == 2
    assert routing_of(trace)["escalation"]["check"] == "low_confidence"  # type: ignore[index]
    # Both tiers saw the same prompt and echoed the same words: half the tokens each.
    usage = response.json()["usage"]
    assert trace["input_tokens"] == 2 * usage["prompt_tokens"]
    assert trace["output_tokens"] == 2 * usage["completion_tokens"]
    expected = (usage["prompt_tokens"] * (1 + 10) + usage["completion_tokens"] * (2 + 20)) / 1e6
    assert trace["cost_usd"] == pytest.approx(expected)


def test_an_answer_off_the_schema_escalates(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    schema = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "invoice", "schema": schema}}
    response = chat(gateway, CALM, response_format=fmt)
    assert response.status_code == 200
    assert response.headers["x-fleetdeck-model"] == "big/gpt"
    trace = trace_of(gateway, response.headers["x-fleetdeck-request-id"])
    assert routing_of(trace)["escalation"]["check"] == "schema_invalid"  # type: ignore[index]
    assert trace["schema_valid"] is False  # the large tier's echo is no JSON either


def test_streams_do_not_escalate_on_checks(gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    small, big = upstreams
    response = chat(gateway, HEDGING, stream=True)
    assert response.status_code == 200
    assert response.headers["x-fleetdeck-model"] == "small/mini"
    assert (small.request_count, big.request_count) == (1, 0)


def test_tools_and_high_risk_go_to_the_large_tier_first(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    small, big = upstreams
    tools = [{"type": "function", "function": {"name": "payments.issue_refund", "parameters": {}}}]
    with_tools = chat(gateway, "Please pay this back.", model=None, tools=tools)
    risky = chat(gateway, "Write a reply: the customer says they will sue us.", model=None)
    assert [r.status_code for r in (with_tools, risky)] == [200, 200]
    assert [r.headers["x-fleetdeck-reason"] for r in (with_tools, risky)] == [
        "tool-call-required",
        "risk-high-flagged",
    ]
    assert {r.headers["x-fleetdeck-model"] for r in (with_tools, risky)} == {"big/gpt"}
    assert (small.request_count, big.request_count) == (0, 2)
    trace = trace_of(gateway, risky.headers["x-fleetdeck-request-id"])
    assert trace["intent"] == "reply" and trace["route"] == "reply"
    classification = routing_of(trace)["classification"]
    assert classification["by"] == "rules" and classification["risk"] == "high"  # type: ignore[index]


def test_the_reservation_covers_the_escalation(
    upstreams: tuple[FakeOpenAI, FakeOpenAI], tmp_path: Path
) -> None:
    small, big = upstreams
    messages = [{"role": "user", "content": CALM}]
    # The gateway bounds prompt tokens by the JSON bytes of messages, prompt, input and tools.
    prompt_bound = len(orjson.dumps(messages)) + 3 * len(b"null")
    worst_large = (prompt_bound * 10 + MAX_TOKENS * 20) / 1e6
    worst_small = (prompt_bound * 1 + MAX_TOKENS * 2) / 1e6
    # Room for the large tier alone, not for a small call that may escalate.
    key = create_key(tmp_path / "data", "capped", daily_cap=worst_large + worst_small / 2)
    with fleetdeck_serve(tmp_path / "data", POLICY.format(small=small.base_url, big=big.base_url)) as served:
        headers = {"Authorization": f"Bearer {key}"}
        url = f"{served.base_url}/chat/completions"
        tiered = httpx.post(
            url,
            json={"model": "route:reply", "messages": messages, "max_tokens": MAX_TOKENS},
            headers=headers,
            timeout=30,
        )
        single = httpx.post(
            url,
            json={"model": "route:big_only", "messages": messages, "max_tokens": MAX_TOKENS},
            headers=headers,
            timeout=30,
        )
    assert tiered.status_code == 429 and tiered.json()["error"]["code"] == "budget_exceeded"
    assert single.status_code == 200


def test_a_prompt_over_the_context_budget_skips_the_primary(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    small, big = upstreams
    long_text = "word " * 200
    moved = chat(gateway, long_text, model="route:docs")
    refused = chat(gateway, long_text, model="route:docs_alone")
    short = chat(gateway, "short", model="route:docs")
    tiered = chat(gateway, long_text, model="route:reply")
    assert moved.status_code == 200 and moved.headers["x-fleetdeck-model"] == "big/gpt"
    assert moved.headers["x-fleetdeck-reason"] == "context-budget-exceeded"
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_budget_exceeded"
    assert short.headers["x-fleetdeck-model"] == "small/mini"
    assert tiered.headers["x-fleetdeck-model"] == "big/gpt", "the large tier is the next candidate"
    assert tiered.headers["x-fleetdeck-reason"] == "context-budget-exceeded"
    assert (small.request_count, big.request_count) == (1, 2)


@pytest.mark.parametrize(
    ("answer", "check"),
    [
        (
            {"message": {"content": "I'm sorry, but I can't help with that."}, "finish_reason": "stop"},
            "refusal",
        ),
        (
            {"message": {"content": "As an AI language model I have no view."}, "finish_reason": "stop"},
            "refusal",
        ),
        ({"message": {"content": "It is unclear from the text."}, "finish_reason": "stop"}, "low_confidence"),
        ({"message": {"content": "  "}, "finish_reason": "stop"}, "low_confidence"),
        ({"message": {"content": "The total is 12 EUR and"}, "finish_reason": "length"}, "truncated"),
        (
            {"message": {"content": None, "tool_calls": [{"function": {"name": "shell.exec"}}]}},
            "guard",
        ),
        ({"message": {"content": "Your refund was issued today."}, "finish_reason": "stop"}, None),
        ({"message": {"content": None, "tool_calls": [{"function": {"name": "crm.lookup"}}]}}, None),
    ],
)
def test_cheap_checks(answer: dict[str, object], check: str | None) -> None:
    tools = ToolPolicy(allow=["crm.lookup"])
    checks = ["schema_invalid", "refusal", "low_confidence", "truncated", "guard"]
    assert escalation.failed_check({"choices": [answer]}, checks, None, tools) == check
    assert escalation.failed_check({"choices": [answer]}, [], None, tools) is None


def test_embeddings_do_not_escalate(gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    small, big = upstreams
    embedded = httpx.post(
        f"{gateway.base_url}/embeddings",
        json={"model": "route:reply", "input": HEDGING},
        headers=gateway.auth,
        timeout=30,
    )
    sent.append(embedded)
    assert embedded.status_code == 200 and embedded.headers["x-fleetdeck-model"] == "small/mini"
    assert (small.request_count, big.request_count) == (1, 0)
