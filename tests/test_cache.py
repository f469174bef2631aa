"""The response cache through a real `fleetdeck serve` and a fake upstream that counts its calls.

A request the cache answers never reaches the upstream, so `upstream.request_count` tells
a hit from a miss independently of what the gateway's trace says about it.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fakes.openai_upstream import FakeOpenAI
from gateway_process import Served, cache_entry, trace_of

from console.policy import PolicyError, parse_policy

OUTPUT_PRICE = 2.0  # USD per million output tokens

POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: "{url}"
    models: [mock-gpt, text-embedding-3-small]
    prices: {{mock-gpt: {{input: 1.0, output: {output}}}}}
routes:
  - {{intent: cached, primary: lab/mock-gpt, cache: "on", cache_embedder: lexical}}
  - {{intent: sampled, primary: lab/mock-gpt, cache: "on", cache_embedder: lexical, cache_sampled: true}}
  - {{intent: brief, primary: lab/mock-gpt, cache: "on", cache_embedder: lexical, cache_ttl: 1}}
  - {{intent: plain, primary: lab/mock-gpt}}
  - {{intent: embed, primary: lab/text-embedding-3-small}}
  - {{intent: via_route, primary: lab/mock-gpt, cache: "on", cache_embedder: "route:embed"}}
default_route: cached
"""
SYSTEM = {"role": "system", "content": "You are a support agent for ACME. Answer in one sentence."}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "crm_lookup", "parameters": {"type": "object", "properties": {}}},
    }
]


pytestmark = pytest.mark.usefixtures("clean_upstream")


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url, output=OUTPUT_PRICE)


def ask(served: Served, text: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    payload = {
        "model": "route:cached",
        "messages": [SYSTEM, {"role": "user", "content": text}],
        "temperature": 0,
        **body,
    }
    response = httpx.post(
        f"{served.base_url}/chat/completions",
        json=payload,
        headers={**served.auth, **(headers or {})},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response


def trace(served: Served, response: httpx.Response) -> dict[str, Any]:
    return trace_of(served, response.headers["x-fleetdeck-request-id"])


def settle(served: Served, response: httpx.Response) -> dict[str, Any]:
    """The trace of a kept miss, once its entry can be found (the cache indexes in the background).

    An answer the cache must not keep is read with `trace` instead: its exact key would be
    in the cache before its trace is recorded, so a repeat finds a wrongly kept answer at once.
    """
    stored = trace(served, response)
    cache_entry(served, response.headers["x-fleetdeck-request-id"])
    return stored


def until_expired(entry: dict[str, Any], timeout_s: float = 30.0) -> None:
    """Wait until the clock the cache reads (the system's) is past the entry's expiry."""
    expires = float(entry["expires_epoch"]) + 0.001  # the stored timestamp keeps microseconds
    deadline = time.monotonic() + timeout_s
    while time.time() <= expires:
        assert time.monotonic() < deadline, "the entry's TTL is longer than the route says"
        time.sleep(0.05)


def test_a_repeated_request_is_served_from_the_cache_at_no_cost(served: Served, upstream: FakeOpenAI) -> None:
    first = ask(served, "How do I reset my password? (repeat test)")
    miss = settle(served, first)
    second = ask(served, "How do I reset my password? (repeat test)")
    hit = trace(served, second)

    assert upstream.request_count == 1
    assert second.json()["choices"] == first.json()["choices"]
    assert second.json()["id"] != first.json()["id"]
    assert second.headers["x-fleetdeck-cache"] == "exact"
    assert second.headers["x-fleetdeck-reason"] == "cache-hit"
    assert (miss["cache"], miss["status"]) == ("miss", "ok")
    assert miss["cost_usd"] > 0
    assert hit["status"] == "cached"
    assert hit["reason_code"] == "cache-hit"
    assert (hit["cache"], hit["cache_similarity"]) == ("exact", 1.0)
    assert hit["cost_usd"] == 0
    assert hit["cache_saved_usd"] == pytest.approx(miss["cost_usd"])
    assert hit["cache_entry"] == miss["request_id"]
    assert hit["response_model"] == "lab/mock-gpt"
    assert hit["output_tokens"] == miss["output_tokens"]


@pytest.mark.parametrize(
    ("change", "route"),
    [
        ({"messages": [{"role": "system", "content": "You are a pirate."}]}, "cached"),
        ({"tools": TOOLS}, "cached"),
        ({"max_tokens": 3}, "cached"),
        ({"temperature": 0.7}, "sampled"),
        (
            {"history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
            "cached",
        ),
    ],
    ids=["system-prompt", "tools", "max-tokens", "temperature", "history"],
)
def test_requests_that_differ_in_what_shapes_the_answer_never_share_an_entry(
    served: Served, upstream: FakeOpenAI, change: dict[str, Any], route: str
) -> None:
    text = f"What are your opening hours? ({next(iter(change))} test)"
    base = {"model": f"route:{route}", "temperature": 0 if route == "cached" else 0.2}
    settle(served, ask(served, text, **base))
    variant = {**base, **change}
    if "messages" in change:
        variant["messages"] = [*change["messages"], {"role": "user", "content": text}]
    if "history" in change:
        variant["messages"] = [SYSTEM, *variant.pop("history"), {"role": "user", "content": text}]
    other = trace(served, ask(served, text, **variant))
    again = trace(served, ask(served, text, **base))

    assert upstream.request_count == 2  # the base and the variant; the base again is a hit
    assert other["cache"] == "miss"
    assert other["cache_similarity"] is None
    assert (again["cache"], again["status"]) == ("exact", "cached")


def test_a_near_duplicate_of_a_templated_prompt_is_a_semantic_hit_but_another_number_is_not(
    served: Served, upstream: FakeOpenAI
) -> None:
    template = "Extract the invoice number from: Invoice INV-{number} due 2026-12-01."
    settle(served, ask(served, template.format(number="2291")))
    near = ask(served, "Extract the invoice number from: Invoice INV-2291, due on 2026-12-01.")
    other = ask(served, template.format(number="7730"))

    near_trace, other_trace = trace(served, near), trace(served, other)
    assert upstream.request_count == 2  # the first and the other number
    assert near_trace["cache"] == "semantic"
    assert near_trace["cache_similarity"] >= 0.92
    assert near.headers["x-fleetdeck-cache"] == "semantic"
    assert other_trace["cache"] == "miss"
    assert "7730" in other.json()["choices"][0]["message"]["content"]


def test_an_expired_entry_is_not_served(served: Served, upstream: FakeOpenAI) -> None:
    kept = settle(served, ask(served, "Where is my parcel? (ttl test)", model="route:brief"))
    until_expired(cache_entry(served, kept["request_id"]))
    late = trace(served, ask(served, "Where is my parcel? (ttl test)", model="route:brief"))

    assert upstream.request_count == 2
    assert (late["cache"], late["status"]) == ("miss", "ok")


def test_a_response_with_tool_calls_is_never_cached(served: Served, upstream: FakeOpenAI) -> None:
    body = {"tools": TOOLS, "tool_choice": "required"}
    first = ask(served, "Look up customer 42 (tool test)", **body)
    trace(served, first)
    second = ask(served, "Look up customer 42 (tool test)", **body)

    assert first.json()["choices"][0]["message"]["tool_calls"]
    assert upstream.request_count == 2
    assert trace(served, second)["cache"] == "miss"


def test_sampled_requests_and_routes_without_a_cache_are_not_cached(
    served: Served, upstream: FakeOpenAI
) -> None:
    for _ in range(2):
        ask(served, "Tell me a joke (sampled test)", temperature=0.9)
        ask(served, "Tell me a joke (sampled test)", model="route:plain")
        ask(served, "Tell me a joke (no temperature test)", temperature=None)
    assert upstream.request_count == 6


@pytest.mark.parametrize(
    "header", [{"Cache-Control": "no-store"}, {"X-Fleetdeck-Cache": "bypass"}], ids=["no-store", "bypass"]
)
def test_a_client_can_refuse_the_cache(served: Served, upstream: FakeOpenAI, header: dict[str, str]) -> None:
    text = f"Is the API down? ({next(iter(header))} test)"
    settle(served, ask(served, text))
    refused = trace(served, ask(served, text, headers=header))
    trace(served, ask(served, f"{text} stored?", headers=header))
    unstored = trace(served, ask(served, f"{text} stored?"))

    assert upstream.request_count == 4  # every one but the first: refused, and not stored
    assert refused["cache"] == "miss"
    assert unstored["cache"] == "miss"


def test_no_cache_refreshes_the_entry(served: Served, upstream: FakeOpenAI) -> None:
    text = "What payment methods do you accept? (no-cache test)"
    settle(served, ask(served, text))
    fresh = settle(served, ask(served, text, headers={"Cache-Control": "no-cache"}))
    replayed = trace(served, ask(served, text))

    assert upstream.request_count == 2
    assert fresh["cache"] == "miss"
    assert replayed["cache_entry"] == fresh["request_id"]


def test_a_cached_answer_streams_to_the_openai_sdk(served: Served, upstream: FakeOpenAI) -> None:
    client = served.client()
    messages = [SYSTEM, {"role": "user", "content": "Do you ship to other countries? (stream test)"}]
    answered = client.chat.completions.with_raw_response.create(
        model="route:cached",
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
    )
    first = answered.parse()
    cache_entry(served, answered.headers["x-fleetdeck-request-id"])
    stream = client.chat.completions.with_raw_response.create(
        model="route:cached",
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    hit = trace_of(served, stream.headers["x-fleetdeck-request-id"])

    assert upstream.request_count == 1
    assert text == first.choices[0].message.content
    assert len([c for c in chunks if c.choices]) > 3  # streamed in pieces, not one blob
    assert finish == [first.choices[0].finish_reason]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == first.usage.completion_tokens  # type: ignore[union-attr]
    assert (hit["cache"], hit["status"], hit["stream"]) == ("exact", "cached", True)


def test_a_streamed_answer_is_cached_for_both_kinds_of_client(served: Served, upstream: FakeOpenAI) -> None:
    client = served.client()
    messages = [SYSTEM, {"role": "user", "content": "How long does delivery take? (stream first test)"}]
    first = client.chat.completions.with_raw_response.create(
        model="route:cached",
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        stream=True,
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in first.parse() if c.choices)
    cache_entry(served, first.headers["x-fleetdeck-request-id"])
    again = client.chat.completions.with_raw_response.create(
        model="route:cached",
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
    )

    assert upstream.request_count == 1
    assert again.parse().choices[0].message.content == streamed
    assert again.headers["x-fleetdeck-cache"] == "exact"


def test_requests_and_answers_with_personal_data_are_not_cached(served: Served, upstream: FakeOpenAI) -> None:
    text = "My email is jane.doe@example.com: where is my order? (pii test)"
    trace(served, ask(served, text))
    again = trace(served, ask(served, text))

    assert upstream.request_count == 2
    assert again["cache"] == "miss"
    assert again["pii_redactions"] > 0


def test_a_route_embedder_asks_the_embeddings_route(served: Served, upstream: FakeOpenAI) -> None:
    text = "Which payment options can I use? (route embedder test)"
    other = "What payment methods do you take? (route embedder test)"
    settle(served, ask(served, text, model="route:via_route"))
    again = trace(served, ask(served, text, model="route:via_route"))  # exact: nothing to embed
    ask(served, other, model="route:via_route")

    embeddings = [r for r in upstream.requests if r.path == "/v1/embeddings"]
    assert [r.body["input"] for r in embeddings] == [text, other]
    assert embeddings[0].body["model"] == "text-embedding-3-small"
    assert again["cache"] == "exact"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("cache: sometimes", "Input should be 'off', 'on' or 'shadow'"),
        ("cache_threshold: 1.5", "less than or equal to 1"),
        ("cache_embedder: bert", "Expected minilm, lexical, gguf:PATH or route:NAME, got 'bert'"),
        (
            "cache_embedder: 'route:embedz'",
            "route:embedz names no route of this policy (did you mean 'embed'?)",
        ),
    ],
)
def test_cache_settings_are_checked_with_the_line_they_are_on(field: str, message: str) -> None:
    text = (
        "providers: {lab: {kind: openai_compat, base_url: 'http://127.0.0.1:1/v1'}}\n"
        "routes:\n"
        "  - intent: embed\n"
        "    primary: lab/e\n"
        "  - intent: chat\n"
        "    primary: lab/m\n"
        f"    {field}\n"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert str(caught.value).startswith("<policy>:7: routes[1].cache")
    assert message in str(caught.value)


def test_an_answer_that_fails_its_output_schema_is_not_cached(served: Served, upstream: FakeOpenAI) -> None:
    text = "Describe the order as JSON (schema test)"  # the fake echoes it: not JSON
    first = trace(served, ask(served, text, response_format={"type": "json_object"}))
    again = trace(served, ask(served, text, response_format={"type": "json_object"}))

    assert first["schema_valid"] is False
    assert upstream.request_count == 2
    assert again["cache"] == "miss"
