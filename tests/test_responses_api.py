"""The OpenAI Responses API through a real `fleetdeck serve`, driven by the official openai SDK:
answered by the local model, by an OpenAI-compatible upstream and by an Anthropic upstream
(fakes over sockets, with faults injected), with stored responses, budgets and bad input."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pydantic
import pytest
from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, cache_entry, create_key, fleetdeck_serve, rows_once_there, trace_of
from genai_prices import Usage, calc_price

MAX_TOKENS = 10
OUTPUT_PRICE = 2.0  # USD per million output tokens of lab/mock-gpt
CALL_COST = MAX_TOKENS * OUTPUT_PRICE / 1_000_000
CAP = 50.5 * CALL_COST  # room for exactly 50 calls
LONG_INPUT = " ".join(f"w{i}" for i in range(3 * MAX_TOKENS))  # the echo is cut at MAX_TOKENS

POLICY = """
providers:
  local: {{kind: local, model_path: default, model_name: smollm2-135m}}
  lab:
    kind: openai_compat
    base_url: "{openai}"
    models: [mock-gpt, gpt-4o-mini]
    prices: {{mock-gpt: {{input: 0, output: {output}}}}}
  claude:
    kind: anthropic
    base_url: "{anthropic}"
    secret: claude
    models: [claude-fake]
    prices: {{claude-fake: {{input: 3, output: 15}}}}
routes:
  - {{intent: general, primary: local/smollm2-135m}}
  - {{intent: lab, primary: lab/mock-gpt, max_retries: 0}}
  - {{intent: claude, primary: claude/claude-fake, max_retries: 0}}
  - {{intent: cached, primary: lab/mock-gpt, max_retries: 0, cache_ttl: 3600}}
  - {{intent: tooled, primary: lab/mock-gpt, max_retries: 0, tools: {{allow: [lookup]}}}}
default_route: general
"""
BACKENDS = {"local": "local/smollm2-135m", "openai": "route:lab", "anthropic": "route:claude"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
FORCE_WEATHER = {"type": "function", "name": "get_weather"}
KEYS = {"capped": {"daily_cap": CAP}, "capped_stream": {"daily_cap": CAP}, "other": {}}

pytestmark = pytest.mark.usefixtures("clean_upstream", "clean_anthropic")


@pytest.fixture(scope="module")
def anthropic_upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def clean_anthropic(anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.reset()


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic) -> str:
    return POLICY.format(openai=upstream.base_url, anthropic=anthropic_upstream.root_url, output=OUTPUT_PRICE)


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    return {"FLEETDECK_SECRET_CLAUDE": "sk-ant-test"}


@pytest.fixture(scope="module")
def keys(data_dir: Path) -> dict[str, str]:
    """Virtual keys besides the served one, stored before the instance starts."""
    return {name: create_key(data_dir, name, **caps) for name, caps in KEYS.items()}


@pytest.fixture(scope="module")
def served(keys: dict[str, str], data_dir: Path, policy: str, served_env: dict[str, str]) -> Iterator[Served]:
    """The module's instance, started once its keys are stored."""
    with fleetdeck_serve(data_dir, policy, served_env) as instance:
        yield instance


def request_id(response: Any) -> str:
    return str(response.id).removeprefix("resp_")


def finished(response: Any, limit: int) -> bool:
    """Completed, or cut at max_output_tokens (the local model may talk on)."""
    if response.status == "incomplete":
        return bool(
            response.incomplete_details.reason == "max_output_tokens"
            and response.usage.output_tokens == limit
        )
    return bool(response.status == "completed")


def post(served: Served, body: bytes | dict[str, Any], key: str | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Authorization": f"Bearer {key or served.key}", "Content-Type": "application/json"}
    return httpx.post(f"{served.base_url}/responses", content=content, headers=headers, timeout=60)


def sse_events(text: str) -> list[dict[str, Any]]:
    """The `data:` of every event of a Responses stream, with its `event:` name checked."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in lines:
            data = orjson.loads(lines["data"])
            assert lines["event"] == data["type"]
            events.append(data)
    return events


# --- create: text, JSON schema, three backends ---------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_from_each_backend(
    served: Served, backend: str, upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    raw = served.client().responses.with_raw_response.create(
        model=BACKENDS[backend], input="Say hello to Ada", instructions="Be brief.", max_output_tokens=16
    )
    response = raw.parse()
    assert response.object == "response" and finished(response, 16)
    assert response.id == f"resp_{raw.headers['x-fleetdeck-request-id']}"
    assert response.output_text and response.output[0].type == "message"
    assert response.usage is not None and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.instructions == "Be brief." and response.max_output_tokens == 16
    if backend == "openai":
        assert response.output_text == "Say hello to Ada"
        sent = upstream.last_request.body
        assert sent["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello to Ada"},
        ]
        assert sent["max_tokens"] == 16 and "store" not in sent and "input" not in sent
    if backend == "anthropic":
        assert response.output_text == "Say hello to Ada"
        sent = anthropic_upstream.last_request.body
        assert sent["system"] == "Be brief." and sent["max_tokens"] == 16
    trace = trace_of(served, request_id(response))
    assert (trace["protocol"], trace["operation"], trace["status"]) == ("responses", "chat", "ok")
    assert trace["output_tokens"] == response.usage.output_tokens
    assert trace["input_tokens"] == response.usage.input_tokens


CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


def test_json_schema_through_text_format_on_the_local_model(served: Served) -> None:
    response = served.client().responses.create(
        model=BACKENDS["local"],
        input="Name a city and its country.",
        text={"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}},
        max_output_tokens=48,
    )
    answer = json.loads(response.output_text)
    assert set(answer) == {"city", "country"}
    assert response.text.format.type == "json_schema"
    trace = trace_of(served, request_id(response))
    assert trace["schema_valid"] is True


class City(pydantic.BaseModel):
    city: str
    country: str


def test_the_sdks_parse_with_a_pydantic_model_on_the_local_model(served: Served) -> None:
    parsed = served.client().responses.parse(
        model=BACKENDS["local"], input="Name a city and its country.", text_format=City, max_output_tokens=48
    )
    assert isinstance(parsed.output_parsed, City) and parsed.output_parsed.city


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_upstream_failing_before_the_first_byte_is_an_error_envelope(
    served: Served, upstream: FakeOpenAI, stream: bool
) -> None:
    upstream.fail_next(1, Fault(status=503))
    response = post(served, {"model": BACKENDS["openai"], "input": "hi", "stream": stream})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_server_error"
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert (trace["protocol"], trace["status"], trace["http_status"]) == ("responses", "error", 502)


def test_json_schema_reaches_an_upstream_as_response_format(served: Served, upstream: FakeOpenAI) -> None:
    served.client().responses.create(
        model=BACKENDS["openai"],
        input="Name a city.",
        text={"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}},
    )
    assert upstream.last_request.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": CITY, "strict": True},
    }


# --- function calls ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_function_call_round_trip_with_previous_response_id(
    served: Served, backend: str, upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    client = served.client()
    first = client.responses.create(
        model=BACKENDS[backend],
        input="What is the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice=FORCE_WEATHER,  # type: ignore[arg-type]
        max_output_tokens=64,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id
    json.loads(calls[0].arguments)  # arguments are JSON
    second = client.responses.create(
        model=BACKENDS[backend],
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}],
        max_output_tokens=16,
    )
    assert finished(second, 16) and second.previous_response_id == first.id
    assert second.output_text or backend == "anthropic"  # the fake echoes the last user text: none
    if backend == "openai":
        messages = upstream.last_request.body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
        assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id
        assert messages[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "Sunny, 21 C"}
    if backend == "anthropic":
        turns = anthropic_upstream.last_request.body["messages"]
        assert [t["role"] for t in turns] == ["user", "assistant", "user"]
        assert turns[1]["content"][-1]["type"] == "tool_use"
        assert turns[2]["content"][0] == {
            "type": "tool_result",
            "tool_use_id": calls[0].call_id,
            "content": "Sunny, 21 C",
        }


def test_function_call_round_trip_with_the_full_input_resent(served: Served, upstream: FakeOpenAI) -> None:
    client = served.client()
    question = {"role": "user", "content": "What is the weather in Oslo?"}
    first = client.responses.create(
        model=BACKENDS["openai"],
        input=[question],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice=FORCE_WEATHER,  # type: ignore[arg-type]
        store=False,
    )
    call = next(item for item in first.output if item.type == "function_call")
    resent = [
        question,
        *(item.model_dump(exclude_none=True) for item in first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "Snow"},
    ]
    second = client.responses.create(model=BACKENDS["openai"], input=resent, tools=[WEATHER], store=False)  # type: ignore[arg-type, list-item]
    assert second.status == "completed" and second.output_text
    messages = upstream.last_request.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.arguments}
    with pytest.raises(openai.NotFoundError):  # store: false keeps nothing
        client.responses.retrieve(first.id)


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_text_as_typed_events(served: Served, backend: str) -> None:
    client = served.client()
    with client.responses.stream(
        model=BACKENDS[backend], input="Count to three", max_output_tokens=16
    ) as stream:
        events = list(stream)
    final = events[-1].response  # type: ignore[union-attr]
    assert finished(final, 16)
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed" if final.status == "completed" else "response.incomplete",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas and final.output_text == deltas
    assert final.usage is not None and final.usage.output_tokens > 0
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == deltas and stored.usage == final.usage
    trace = trace_of(served, request_id(final))
    assert (trace["protocol"], trace["stream"], trace["status"]) == ("responses", True, "ok")
    assert trace["output_tokens"] == final.usage.output_tokens


@pytest.mark.parametrize("backend", BACKENDS)
def test_streamed_function_call(served: Served, backend: str) -> None:
    with served.client().responses.stream(
        model=BACKENDS[backend],
        input="Weather in Rome?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice=FORCE_WEATHER,  # type: ignore[arg-type]
        max_output_tokens=64,
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    call = next(item for item in final.output if item.type == "function_call")
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and done[0].arguments == pieces == call.arguments
    assert call.name == "get_weather"
    expected = {"local": {"city"}, "openai": {"input"}, "anthropic": {"query"}}[backend]  # the fakes echo
    assert set(json.loads(call.arguments)) == expected
    assert events[-1].type == "response.completed"


# --- the rest of the pipeline, unchanged -------------------------------------------------------


def test_fields_carry_over_to_the_upstream_and_fleetdecks_context_leaves_metadata(
    served: Served, upstream: FakeOpenAI
) -> None:
    metadata = {"workflow": "billing", "task": "t-42", "customer": "acme"}
    response = served.client().responses.create(
        model=BACKENDS["openai"],
        input="hi",
        temperature=0.2,
        top_p=0.9,
        parallel_tool_calls=False,
        user="u-1",
        text={"format": {"type": "json_object"}},
        metadata=metadata,
    )
    sent = upstream.last_request.body
    assert (sent["temperature"], sent["top_p"], sent["parallel_tool_calls"], sent["user"]) == (
        0.2,
        0.9,
        False,
        "u-1",
    )
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["metadata"] == {"customer": "acme"}, "Fleetdeck's context keys never reach a provider"
    assert (
        response.metadata == metadata
        and response.temperature == 0.2
        and response.parallel_tool_calls is False
    )
    trace = trace_of(served, request_id(response))
    assert (trace["workflow_id"], trace["task_id"], trace["route"]) == ("billing", "t-42", "lab")
    assert trace["schema_valid"] is False, "the echo 'hi' is no JSON object"


def test_the_cache_answers_a_repeated_request_json_and_streamed(served: Served, upstream: FakeOpenAI) -> None:
    client = served.client()
    ask: dict[str, Any] = {"model": "route:cached", "input": "what is cached stays cached", "temperature": 0}
    first = client.responses.with_raw_response.create(**ask)
    cache_entry(served, first.headers["x-fleetdeck-request-id"])
    asked = upstream.request_count
    again = client.responses.with_raw_response.create(**ask)
    assert again.headers["x-fleetdeck-cache"] == "exact"
    assert again.parse().output_text == first.parse().output_text == ask["input"]
    with client.responses.stream(**ask) as stream:
        streamed = stream.get_final_response()
    assert streamed.output_text == ask["input"]
    assert upstream.request_count == asked, "both answered from the cache"
    traces = [trace_of(served, request_id(r)) for r in (again.parse(), streamed)]
    assert [(t["cache"], t["protocol"], t["stream"]) for t in traces] == [
        ("exact", "responses", False),
        ("exact", "responses", True),
    ]


def test_the_routes_tool_policy_withholds_a_call_it_does_not_allow(served: Served) -> None:
    response = served.client().responses.create(
        model="route:tooled",
        input="Weather in Lima?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice=FORCE_WEATHER,  # type: ignore[arg-type]
    )
    assert [item.type for item in response.output] == ["message"]
    assert "withheld" in response.output_text and "(1 not allowed)" in response.output_text
    assert "get_weather" not in response.output_text  # a refused tool is counted, never named
    trace = trace_of(served, request_id(response))
    assert trace["reason_code"] == "risk-high-flagged"
    assert orjson.loads(trace["guard_results"])["tools"] == {"get_weather": "not allowed"}  # type: ignore[arg-type]


# --- stored responses --------------------------------------------------------------------------


def test_retrieve_list_input_items_and_delete(served: Served, keys: dict[str, str]) -> None:
    client = served.client()
    first = client.responses.create(model=BACKENDS["openai"], input="first turn", instructions="Be brief.")
    second = client.responses.create(
        model=BACKENDS["openai"], input="second turn", previous_response_id=first.id
    )
    got = client.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text == "second turn"
    assert got.previous_response_id == first.id and got.usage == second.usage

    items = list(client.responses.input_items.list(second.id, order="asc"))
    assert [item.type for item in items] == ["message", "message", "message"]
    assert [item.role for item in items] == ["user", "assistant", "user"]  # type: ignore[union-attr]
    assert items[1].id == first.output[0].id
    paged = list(client.responses.input_items.list(second.id, limit=1))  # the SDK follows `after`
    assert [item.id for item in paged] == [item.id for item in reversed(items)]
    page = client.responses.input_items.list(second.id, limit=2)
    assert page.has_more is True and len(page.data) == 2

    other = openai.OpenAI(base_url=served.base_url, api_key=keys["other"], max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        other.responses.retrieve(second.id)
    assert caught.value.body["message"] == f"Response with id {second.id!r} not found."  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(second.id)
    with pytest.raises(openai.BadRequestError) as refused:
        other.responses.create(model=BACKENDS["openai"], input="hi", previous_response_id=second.id)
    assert refused.value.code == "previous_response_not_found"

    client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(second.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(second.id)
    assert client.responses.retrieve(first.id).output_text == "first turn"

    sql = (
        "SELECT operation, http_status FROM traces WHERE operation LIKE 'response_%' "
        "AND key_id IN (SELECT key_id FROM virtual_keys WHERE name = 'other')"
    )
    rows = rows_once_there(served, sql, "no trace of the other key's calls")
    for _ in range(200):  # the first trace may be stored before the second: poll for both
        if len(rows) >= 2:
            break
        rows = rows_once_there(served, sql, "no trace of the other key's calls")
    assert Counter((r["operation"], r["http_status"]) for r in rows) == {
        ("response_get", 404): 1,
        ("response_delete", 404): 1,
    }


def test_stored_responses_are_redacted(served: Served) -> None:
    client = served.client()
    response = client.responses.create(
        model=BACKENDS["local"], input="Repeat: ada@example.com", instructions="Mail ada@example.com"
    )
    stored = client.responses.retrieve(response.id)
    items = client.responses.input_items.list(response.id)
    kept = orjson.dumps([stored.model_dump(), [item.model_dump() for item in items]]).decode()
    assert "ada@example.com" not in kept
    assert kept.count("[EMAIL]") >= 2, "the input item and the instructions, redacted"


# --- tokens and cost ----------------------------------------------------------------------------


def test_cached_and_reasoning_tokens_reach_usage_and_trace_at_the_same_cost_streamed(
    served: Served, upstream: FakeOpenAI
) -> None:
    upstream.cached_tokens, upstream.reasoning_tokens = 4, 3
    try:
        client = served.client()
        plain = client.responses.create(model="lab/gpt-4o-mini", input="one two three four five six")
        with client.responses.stream(model="lab/gpt-4o-mini", input="one two three four five six") as stream:
            streamed = stream.get_final_response()
    finally:
        upstream.cached_tokens, upstream.reasoning_tokens = 0, 0
    for response in (plain, streamed):
        usage = response.usage
        assert usage is not None
        assert usage.input_tokens_details.cached_tokens == 4
        assert usage.output_tokens_details.reasoning_tokens == 3
    traces = [trace_of(served, request_id(r)) for r in (plain, streamed)]
    assert [(t["cache_read_tokens"], t["reasoning_tokens"]) for t in traces] == [(4, 3), (4, 3)]
    assert traces[0]["input_tokens"] == traces[1]["input_tokens"] == plain.usage.input_tokens  # type: ignore[union-attr]
    assert traces[0]["output_tokens"] == traces[1]["output_tokens"] == plain.usage.output_tokens  # type: ignore[union-attr]
    expected = calc_price(
        Usage(
            input_tokens=int(traces[0]["input_tokens"]),  # type: ignore[call-overload]
            cache_read_tokens=4,
            output_tokens=int(traces[0]["output_tokens"]),  # type: ignore[call-overload]
        ),
        "gpt-4o-mini",
    ).total_price
    assert traces[0]["cost_usd"] == traces[1]["cost_usd"] == pytest.approx(float(expected), rel=1e-9)
    assert {t["price_source"] for t in traces} == {"genai-prices"}


def test_an_anthropic_upstreams_cache_reads_are_cached_tokens_streamed_or_not(
    served: Served, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.cache_read_tokens = 6
    try:
        client = served.client()
        plain = client.responses.create(model=BACKENDS["anthropic"], input="alpha beta gamma")
        with client.responses.stream(model=BACKENDS["anthropic"], input="alpha beta gamma") as stream:
            streamed = stream.get_final_response()
    finally:
        anthropic_upstream.cache_read_tokens = 0
    assert plain.usage == streamed.usage
    assert plain.usage is not None and plain.usage.input_tokens_details.cached_tokens == 6
    assert plain.usage.input_tokens > 6, "input tokens count the cache reads, as OpenAI's do"
    traces = [trace_of(served, request_id(r)) for r in (plain, streamed)]
    assert [t["cache_read_tokens"] for t in traces] == [6, 6]
    assert traces[0]["cost_usd"] == traces[1]["cost_usd"] and traces[0]["cost_usd"] > 0


# --- budgets under concurrency ------------------------------------------------------------------


def burst(served: Served, key: str, n: int, stream: bool) -> list[httpx.Response]:
    """`n` Responses requests at once, each on its own connection."""

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        body = {"model": "route:lab", "input": LONG_INPUT, "max_output_tokens": MAX_TOKENS, "stream": stream}
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            return await asyncio.gather(
                *(client.post(f"{served.base_url}/responses", json=body, headers=headers) for _ in range(n))
            )

    return asyncio.run(send_all())


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_200_concurrent_requests_against_a_cap_for_50(
    served: Served, keys: dict[str, str], stream: bool
) -> None:
    name = "capped_stream" if stream else "capped"
    responses = burst(served, keys[name], 200, stream)
    codes = Counter(
        "served" if r.status_code == 200 else f"{r.status_code} {r.json()['error']['code']}"
        for r in responses
    )
    assert codes == {"served": 50, "429 budget_exceeded": 150}
    for response in responses:
        if response.status_code == 200 and stream:
            kinds = [event["type"] for event in sse_events(response.text)]
            assert kinds[-1] == "response.incomplete" and "error" not in kinds  # cut at max_output_tokens
        elif response.status_code == 200:
            assert response.json()["status"] == "incomplete"  # cut at max_output_tokens
    sql = (
        "SELECT t.status, t.cost_usd, t.protocol FROM traces t JOIN virtual_keys k ON t.key_id = k.key_id "
        f"WHERE k.name = '{name}'"
    )
    rows = rows_once_there(served, sql, "no traces")
    for _ in range(100):
        if len(rows) >= 200:
            break
        rows = rows_once_there(served, sql, "no traces")
    assert len(rows) == 200
    assert {r["protocol"] for r in rows} == {"responses"}
    assert Counter(r["status"] for r in rows) == {"ok": 50, "over_budget": 150}
    assert sum(r["cost_usd"] or 0 for r in rows) <= CAP


# --- bad input ----------------------------------------------------------------------------------

BAD = {
    "malformed JSON": (b'{"model": "route:lab", "input": ', "invalid_json", None),
    "input of the wrong type": ({"model": "route:lab", "input": 42}, None, "input"),
    "an unknown item type": (
        {"model": "route:lab", "input": [{"type": "computer_call", "id": "x"}]},
        None,
        "input[0].type",
    ),
    "an unknown content part": (
        {"model": "route:lab", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
        None,
        "input[0].content[0].type",
    ),
    "a function_call_output without its call": (
        {"model": "route:lab", "input": [{"type": "function_call_output", "call_id": "c1", "output": "x"}]},
        None,
        "input[0].call_id",
    ),
    "a built-in tool": (
        {"model": "route:lab", "input": "hi", "tools": [{"type": "web_search"}]},
        None,
        "tools[0].type",
    ),
    "max_output_tokens of zero": (
        {"model": "route:lab", "input": "hi", "max_output_tokens": 0},
        None,
        "max_output_tokens",
    ),
    "an unknown text format": (
        {"model": "route:lab", "input": "hi", "text": {"format": {"type": "yaml"}}},
        None,
        "text.format.type",
    ),
    "temperature as a string": (
        {"model": "route:lab", "input": "hi", "temperature": "hot"},
        None,
        "temperature",
    ),
    "an unknown previous_response_id": (
        {"model": "route:lab", "input": "hi", "previous_response_id": "resp_nope"},
        "previous_response_not_found",
        "previous_response_id",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gets_the_openai_envelope_and_one_trace(
    served: Served, case: str, upstream: FakeOpenAI
) -> None:
    body, code, param = BAD[case]
    response = post(served, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert (error["code"], error["param"]) == (code, param)
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert (trace["protocol"], trace["status"], trace["http_status"]) == ("responses", "error", 400)
    assert upstream.request_count == 0, "nothing reached the upstream"


def test_unknown_stored_response_paths_are_not_found(served: Served) -> None:
    client = served.client()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_never")
    listing = httpx.get(
        f"{served.base_url}/responses/resp_never/input_items", params={"limit": "0"}, headers=served.auth
    )
    assert listing.status_code == 400 and listing.json()["error"]["param"] == "limit"
    anonymous = httpx.get(f"{served.base_url}/responses/resp_never")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"


# --- an upstream cut mid-stream ----------------------------------------------------------------


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_an_upstream_cut_mid_stream_fails_the_response(
    served: Served, backend: str, upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    fake: FakeOpenAI | FakeAnthropic = upstream if backend == "openai" else anthropic_upstream
    fake.fail_next(1, Fault(cut_after=4, stream=True))
    body = {"model": BACKENDS[backend], "input": "one two three four five six seven eight", "stream": True}
    response = post(served, body)
    assert response.status_code == 200
    events = sse_events(response.text)
    kinds = [event["type"] for event in events]
    assert "response.output_text.delta" in kinds, "the cut came after the first byte"
    assert kinds[-2:] == ["response.failed", "error"]
    assert "response.completed" not in kinds and "response.output_item.done" not in kinds
    failed = events[-2]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"]
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert (trace["protocol"], trace["status"]) == ("responses", "partial")

    fake.fail_next(1, Fault(cut_after=4, stream=True))  # the SDK sees the failure, never a completion
    with served.client().responses.stream(model=BACKENDS[backend], input=body["input"]) as stream:
        seen = [event.type for event in stream]
        with pytest.raises(RuntimeError, match=r"response\.completed"):
            stream.get_final_response()
    assert "response.failed" in seen and "response.completed" not in seen
