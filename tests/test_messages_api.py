"""The Anthropic Messages API through a real `fleetdeck serve`, driven by the official `anthropic`
SDK: answered by the local model, by an OpenAI-compatible upstream (translated) and by an
Anthropic upstream (passed through), both fakes over sockets with injected faults.

The capped routes follow tests/test_cost_controls.py: input is free and the prompt is longer
than max_tokens, so every served call costs exactly its reserved worst case and "exactly 50
fit" holds whatever the timing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from fakes.anthropic_upstream import SIGNATURE, THINKING, THINKING_TOKENS, FakeAnthropic
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, cache_entry, create_key, fleetdeck_serve, rows_once_there, trace_of
from genai_prices import Usage, calc_price

UPSTREAM_KEY = "sk-ant-upstream-test"
MAX_TOKENS = 10
OUTPUT_PRICE = 2.0  # USD per million output tokens on the capped routes
CALL_COST = MAX_TOKENS * OUTPUT_PRICE / 1_000_000
CAP = 50.5 * CALL_COST  # room for exactly 50 calls
LONG_PROMPT = " ".join(f"w{i}" for i in range(3 * MAX_TOKENS))
CAPPED_KEYS = ("lab-json", "lab-stream", "claude-json", "claude-stream")

POLICY = """
providers:
  local: {{kind: local, model_path: default, model_name: smollm2-135m}}
  lab:
    kind: openai_compat
    base_url: "{lab}"
    models: [mock-gpt]
    prices: {{mock-gpt: {{input: 0, output: {output}}}}}
  claude:
    kind: anthropic
    base_url: "{claude}"
    secret: claude
    models: [claude-sonnet-4-5, claude-capped]
    prices: {{claude-capped: {{input: 0, output: {output}}}}}
routes:
  - {{intent: general, primary: local/smollm2-135m, max_retries: 1}}
  - {{intent: lab, primary: lab/mock-gpt, max_retries: 0}}
  - {{intent: claude, primary: claude/claude-sonnet-4-5, max_retries: 0}}
  - intent: claude_policed
    primary: claude/claude-sonnet-4-5
    tools: {{allow: [crm.lookup]}}
  - {{intent: lab_cached, primary: lab/mock-gpt, cache_ttl: 3600}}
  - {{intent: prod_only, primary: lab/mock-gpt, environments: [prod]}}
  - {{intent: lab_capped, primary: lab/mock-gpt, max_retries: 0, timeouts: {{total_s: 60}}}}
  - {{intent: claude_capped, primary: claude/claude-capped, max_retries: 0, timeouts: {{total_s: 60}}}}
default_route: general
"""
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(upstream: FakeOpenAI, claude: FakeAnthropic) -> None:
    upstream.reset()
    claude.reset()
    claude.cache_read_tokens = claude.cache_write_tokens = 0


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI, claude: FakeAnthropic) -> str:
    return POLICY.format(lab=upstream.base_url, claude=claude.base_url, output=OUTPUT_PRICE)


@pytest.fixture(scope="module")
def served_env() -> dict[str, str]:
    return {"FLEETDECK_SECRET_CLAUDE": UPSTREAM_KEY}


@pytest.fixture(scope="module")
def keys(data_dir: Path) -> dict[str, str]:
    """Capped virtual keys, stored before the instance starts."""
    return {name: create_key(data_dir, name, daily_cap=CAP) for name in CAPPED_KEYS}


@pytest.fixture(scope="module")
def served(keys: dict[str, str], data_dir: Path, policy: str, served_env: dict[str, str]) -> Iterator[Served]:
    """The module's instance, started once its capped keys are stored."""
    with fleetdeck_serve(data_dir, policy, served_env) as instance:
        yield instance


def client(served: Served) -> anthropic.Anthropic:
    """The official SDK with the virtual key as `x-api-key`, one request per call."""
    return anthropic.Anthropic(base_url=served.url, api_key=served.key, max_retries=0)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """A raw event stream's (event name, data) pairs."""
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, orjson.loads(line.removeprefix("data: "))))
    return events


def post(served: Served, body: Any, path: str = "/v1/messages", **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"x-api-key": served.key, "anthropic-version": "2023-06-01", **headers}
    return httpx.post(f"{served.url}{path}", content=content, headers=sent, timeout=60)


# --- the local model ------------------------------------------------------------------------------


def test_local_model_answers_create_and_the_trace_says_messages(served: Served) -> None:
    raw = client(served).messages.with_raw_response.create(
        model="route:general", max_tokens=16, messages=user("Say hello.")
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    trace = trace_of(served, raw.headers["x-fleetdeck-request-id"])
    assert trace["protocol"] == "messages" and trace["operation"] == "chat"
    assert trace["provider"] == "local" and trace["status"] == "ok"
    assert trace["input_tokens"] == message.usage.input_tokens
    assert trace["output_tokens"] == message.usage.output_tokens


def test_local_model_streams_anthropic_events(served: Served) -> None:
    with client(served).messages.stream(
        model="route:general", max_tokens=16, messages=user("Count to five.")
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds.count("message_start") == 1
    assert kinds[-1] == "message_stop" and "message_delta" in kinds
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert final.content[0].type == "text" and final.content[0].text
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_local_count_tokens_is_the_model_s_own_count(served: Served) -> None:
    sdk = client(served)
    counted = sdk.messages.count_tokens(model="route:general", messages=user("Say hello."))
    answered = sdk.messages.create(model="route:general", max_tokens=4, messages=user("Say hello."))
    assert counted.input_tokens == answered.usage.input_tokens


def test_local_tool_use_round_trip(served: Served) -> None:
    sdk = client(served)
    question = user("What is the weather in Paris?")
    first = sdk.messages.create(
        model="route:general",
        max_tokens=48,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=question,
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict)
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}
    second = sdk.messages.create(
        model="route:general",
        max_tokens=16,
        tools=[WEATHER],
        messages=[
            *question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [result]},
        ],
    )
    assert second.content and second.usage.input_tokens > first.usage.input_tokens


def test_local_tool_use_streams_as_input_json_deltas(served: Served) -> None:
    with client(served).messages.stream(
        model="route:general",
        max_tokens=48,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=user("What is the weather in Paris?"),
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    deltas = {event.delta.type for event in events if event.type == "content_block_delta"}
    assert deltas == {"input_json_delta"}
    call = next(block for block in final.content if block.type == "tool_use")
    assert call.name == "get_weather" and isinstance(call.input, dict) and final.stop_reason == "tool_use"


def test_an_image_the_local_model_cannot_read_is_refused_clearly(served: Served) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(served).messages.create(
            model="route:general",
            max_tokens=8,
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}],
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "text parts only" in refused.value.body["error"]["message"]  # type: ignore[index]


def test_images_reach_an_openai_compatible_upstream_as_image_parts(
    served: Served, upstream: FakeOpenAI
) -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    client(served).messages.create(
        model="route:lab",
        max_tokens=8,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "cat?"}]}],
    )
    parts = upstream.last_request.body["messages"][-1]["content"]
    assert parts == [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "cat?"},
    ]


# --- an OpenAI-compatible upstream: translated ------------------------------------------------------


def test_openai_compatible_upstream_is_translated_both_ways(served: Served, upstream: FakeOpenAI) -> None:
    message = client(served).messages.create(
        model="route:lab",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief."}],
        stop_sequences=["STOP"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5},  # this SDK no longer offers it; the API still takes it
        messages=user("hello from the messages api"),
    )
    assert message.content[0].type == "text" and message.content[0].text == "hello from the messages api"
    assert message.stop_reason == "end_turn"
    sent = upstream.last_request.body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stop"] == ["STOP"] and sent["temperature"] == 0.5 and sent["user"] == "u-1"
    assert sent["max_tokens"] == 50


def test_openai_compatible_tool_round_trip_and_stream(served: Served, upstream: FakeOpenAI) -> None:
    sdk = client(served)
    question = user("weather in Paris")
    first = sdk.messages.create(
        model="route:lab", max_tokens=50, tools=[WEATHER], tool_choice={"type": "any"}, messages=question
    )
    assert upstream.last_request.body["tool_choice"] == "required"
    call = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.input == {"input": "weather in Paris"}
    follow_up = [
        *question,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    with sdk.messages.stream(model="route:lab", max_tokens=50, tools=[WEATHER], messages=follow_up) as stream:
        final = stream.get_final_message()
    tool_message = upstream.last_request.body["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    assert final.content[0].type == "text" and final.stop_reason == "end_turn"
    with sdk.messages.stream(
        model="route:lab", max_tokens=50, tools=[WEATHER], tool_choice={"type": "any"}, messages=question
    ) as stream:
        streamed = stream.get_final_message()
    streamed_call = next(block for block in streamed.content if block.type == "tool_use")
    assert streamed_call.input == {"input": "weather in Paris"} and streamed.stop_reason == "tool_use"


def test_the_cache_answers_a_messages_client_json_and_streamed(served: Served, upstream: FakeOpenAI) -> None:
    body = {
        "model": "route:lab_cached",
        "max_tokens": 20,
        "messages": user("cache this answer please"),
        "extra_body": {"temperature": 0},  # a sampled answer is not cached
    }
    first = client(served).messages.with_raw_response.create(**body)
    cache_entry(served, first.headers["x-fleetdeck-request-id"])  # kept and indexed
    sent = upstream.request_count
    again = client(served).messages.with_raw_response.create(**body)
    assert again.headers["x-fleetdeck-cache"] == "exact"
    assert again.parse().content[0].text == first.parse().content[0].text == "cache this answer please"
    with client(served).messages.stream(**body) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
        assert stream.response.headers["x-fleetdeck-cache"] == "exact"
    assert upstream.request_count == sent  # neither reached the upstream
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert streamed.content[0].text == "cache this answer please"


def test_openai_compatible_count_tokens_is_an_estimate_and_says_so(served: Served) -> None:
    raw = client(served).messages.with_raw_response.count_tokens(model="route:lab", messages=user("hi there"))
    assert raw.parse().input_tokens > 0
    assert raw.headers["x-fleetdeck-token-count"] == "estimate"
    trace = trace_of(served, raw.headers["x-fleetdeck-request-id"])
    assert trace["operation"] == "count_tokens" and trace["cost_usd"] == 0
    assert trace["price_source"] == "token count (estimated)"


# --- an Anthropic upstream: passed through -----------------------------------------------------------


def history_with_thinking() -> list[dict[str, Any]]:
    thinking = {"type": "thinking", "thinking": "Earlier thoughts.", "signature": "sig-earlier"}
    return [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": [thinking, {"type": "text", "text": "first answer"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "second question", "cache_control": {"type": "ephemeral"}}],
        },
    ]


def test_anthropic_upstream_gets_the_request_as_sent(served: Served, claude: FakeAnthropic) -> None:
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    tools = [{**WEATHER, "cache_control": {"type": "ephemeral"}}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    raw = client(served).messages.with_raw_response.create(
        model="route:claude",
        max_tokens=2000,
        system=system,
        tools=tools,
        thinking=thinking,
        messages=history_with_thinking(),
        metadata={"user_id": "u-7", "workflow": "coding"},  # type: ignore[typeddict-unknown-key]
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    message, sent = raw.parse(), claude.last_request
    assert sent.headers["x-api-key"] == UPSTREAM_KEY  # Fleetdeck's secret, never the client's key
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"  # the client's betas go along
    assert sent.body["system"] == system and sent.body["tools"] == tools and sent.body["thinking"] == thinking
    assert sent.body["messages"] == history_with_thinking()
    assert sent.body["metadata"] == {"user_id": "u-7"} and sent.body["model"] == "claude-sonnet-4-5"
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == THINKING and message.content[0].signature == SIGNATURE
    assert message.id.startswith("msg_fake")  # the upstream's own message
    trace = trace_of(served, raw.headers["x-fleetdeck-request-id"])
    assert trace["workflow_id"] == "coding"  # Fleetdeck's context key, kept from the upstream


def test_anthropic_upstream_stream_passes_thinking_and_signatures(served: Served) -> None:
    with client(served).messages.stream(
        model="route:claude",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("think about this"),
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds.count("message_start") == 1 and kinds[-1] == "message_stop"
    deltas = [event.delta.type for event in events if event.type == "content_block_delta"]
    assert deltas[:2] == ["thinking_delta", "signature_delta"] and "text_delta" in deltas
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].signature == SIGNATURE and final.content[1].text == "think about this"


def test_a_request_the_guards_rewrote_is_translated_not_passed_through(
    served: Served, claude: FakeAnthropic
) -> None:
    client(served).messages.create(
        model="route:claude",
        max_tokens=100,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=user("mail me at jane.doe@example.com"),
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    sent = claude.last_request.body
    assert "jane.doe@example.com" not in orjson.dumps(sent).decode()  # PII redacted for the remote
    assert "thinking" not in sent  # the client's own body was not used
    assert "anthropic-beta" not in claude.last_request.headers  # nor its betas


def test_anthropic_tool_round_trip(served: Served, claude: FakeAnthropic) -> None:
    sdk = client(served)
    question = user("weather in Oslo")
    first = sdk.messages.create(
        model="route:claude", max_tokens=100, tools=[WEATHER], tool_choice={"type": "any"}, messages=question
    )
    call = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.input == {"query": "weather in Oslo"}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "cold"}]}
    turns = [
        *question,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [result]},
    ]
    # Claude's own model name, as Claude Code sends it, resolves to the provider that lists it.
    second = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=100, tools=[WEATHER], messages=turns)
    assert claude.last_request.body["messages"][-1]["content"] == [result]
    assert second.stop_reason == "end_turn"


def test_tool_calls_the_policy_withholds_never_pass_through(served: Served) -> None:
    message = client(served).messages.create(
        model="route:claude_policed",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=user("weather in Rome"),
    )
    assert [block.type for block in message.content] == ["text"]  # the upstream's tool_use is gone
    assert "withheld" in message.content[0].text and message.stop_reason == "end_turn"


def test_streamed_tool_calls_the_policy_withholds_never_pass_through(served: Served) -> None:
    body = {
        "model": "route:claude_policed",
        "max_tokens": 100,
        "stream": True,
        "tools": [WEATHER],
        "tool_choice": {"type": "any"},
        "messages": user("weather in Rome"),
    }
    response = post(served, body)
    assert response.status_code == 200
    assert b"get_weather" not in response.content and b"tool_use" not in response.content
    events = sse_events(response)
    assert [name for name, _ in events].count("message_start") == 1
    assert events[-1][0] == "message_stop"
    stops = [data["delta"]["stop_reason"] for name, data in events if name == "message_delta"]
    assert stops == ["end_turn"]
    text = "".join(data["delta"].get("text", "") for name, data in events if name == "content_block_delta")
    assert "withheld" in text


def test_tool_result_images_pass_through_or_follow_as_image_parts(
    served: Served, claude: FakeAnthropic, upstream: FakeOpenAI
) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": "shot:"}, image],
    }
    turns = [*user("take a screenshot"), tool_use_turn(), {"role": "user", "content": [result]}]
    client(served).messages.create(model="route:claude", max_tokens=50, tools=[WEATHER], messages=turns)
    assert claude.last_request.body["messages"][-1]["content"] == [result]
    client(served).messages.create(model="route:lab", max_tokens=50, tools=[WEATHER], messages=turns)
    tool_message, after = upstream.last_request.body["messages"][-2:]
    assert tool_message == {"role": "tool", "tool_call_id": "toolu_1", "content": "shot:"}
    assert after == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}],
    }


def test_unsigned_thinking_never_reaches_anthropic(served: Served, claude: FakeAnthropic) -> None:
    """Fleetdeck renders an OpenAI-compatible upstream's reasoning as thinking without a
    signature; a client that sends it back must not have Anthropic refuse the turn."""
    unsigned = {"type": "thinking", "thinking": "from a local model", "signature": ""}
    turns = [
        *user("q1"),
        {"role": "assistant", "content": [unsigned, {"type": "text", "text": "a1"}]},
        *user("q2"),
    ]
    client(served).messages.create(model="route:claude", max_tokens=50, messages=turns)
    assert claude.last_request.body["messages"][1]["content"] == [{"type": "text", "text": "a1"}]


def test_anthropic_count_tokens_is_the_upstream_s(served: Served, claude: FakeAnthropic) -> None:
    raw = client(served).messages.with_raw_response.count_tokens(
        model="route:claude", system="sys words here", messages=user("count these four words")
    )
    assert raw.parse().input_tokens == 3 + 4 + 3  # the fake's count: 3 a message, words, system words
    assert raw.headers["x-fleetdeck-token-count"] == "counted"
    assert claude.last_request.path == "/v1/messages/count_tokens"


# --- tokens and cost ---------------------------------------------------------------------------------


def genai_cost(usage: anthropic.types.Usage, reasoning: int = 0) -> float:
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    counted = Usage(
        input_tokens=usage.input_tokens + cache_read + cache_write,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        output_tokens=usage.output_tokens,
        output_reasoning_tokens=reasoning,
    )
    return float(calc_price(counted, "claude-sonnet-4-5", provider_id="anthropic").total_price)


def test_cache_reads_writes_and_reasoning_are_priced_at_genai_prices_rates(
    served: Served, claude: FakeAnthropic
) -> None:
    claude.cache_read_tokens, claude.cache_write_tokens = 1200, 800
    body = {
        "model": "route:claude",
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": user("price this call with its cached prompt"),
    }
    raw = client(served).messages.with_raw_response.create(**body)
    usage = raw.parse().usage
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (1200, 800)
    assert usage.output_tokens_details is not None
    assert usage.output_tokens_details.thinking_tokens == THINKING_TOKENS
    trace = trace_of(served, raw.headers["x-fleetdeck-request-id"])
    assert trace["input_tokens"] == usage.input_tokens + 1200 + 800  # all input, each token once
    assert (trace["cache_read_tokens"], trace["cache_write_tokens"]) == (1200, 800)
    assert trace["reasoning_tokens"] == THINKING_TOKENS and trace["output_tokens"] == usage.output_tokens
    assert trace["cost_usd"] == pytest.approx(genai_cost(usage, THINKING_TOKENS), rel=1e-9)
    assert trace["price_source"] == "genai-prices"

    with client(served).messages.stream(**body) as stream:
        streamed = stream.get_final_message()
        request_id = stream.response.headers["x-fleetdeck-request-id"]
    streamed_trace = trace_of(served, request_id)
    assert streamed.usage.input_tokens == usage.input_tokens
    assert streamed.usage.cache_read_input_tokens == 1200
    assert streamed.usage.output_tokens == usage.output_tokens  # the final count, not a sum
    assert streamed_trace["stream"] is True
    assert streamed_trace["cost_usd"] == pytest.approx(trace["cost_usd"], rel=1e-12)
    assert streamed_trace["cache_write_tokens"] == 800


def test_translated_streams_cost_what_the_same_json_call_costs(served: Served) -> None:
    body = {"model": "route:lab_capped", "max_tokens": MAX_TOKENS, "messages": user(LONG_PROMPT)}
    raw = client(served).messages.with_raw_response.create(**body)
    with client(served).messages.stream(**body) as stream:
        stream.get_final_message()
        request_id = stream.response.headers["x-fleetdeck-request-id"]
    json_trace = trace_of(served, raw.headers["x-fleetdeck-request-id"])
    stream_trace = trace_of(served, request_id)
    assert json_trace["cost_usd"] == stream_trace["cost_usd"] == pytest.approx(CALL_COST)
    assert json_trace["output_tokens"] == stream_trace["output_tokens"] == MAX_TOKENS


# --- hard caps under concurrency ---------------------------------------------------------------------


def burst(served: Served, key: str, route: str, n: int, stream: bool) -> list[httpx.Response]:
    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        body = {"model": route, "max_tokens": MAX_TOKENS, "messages": user(LONG_PROMPT), "stream": stream}
        async with httpx.AsyncClient(limits=limits, timeout=120) as http:
            return await asyncio.gather(
                *(
                    http.post(f"{served.url}/v1/messages", json=body, headers={"x-api-key": key})
                    for _ in range(n)
                )
            )

    return asyncio.run(send_all())


@pytest.mark.parametrize(
    ("key_name", "route", "stream"),
    [
        ("lab-json", "route:lab_capped", False),
        ("lab-stream", "route:lab_capped", True),
        ("claude-json", "route:claude_capped", False),
        ("claude-stream", "route:claude_capped", True),
    ],
)
def test_200_concurrent_messages_against_a_cap_for_50(
    served: Served, keys: dict[str, str], key_name: str, route: str, stream: bool
) -> None:
    responses = burst(served, keys[key_name], route, 200, stream)
    outcomes: Counter[str] = Counter()
    for response in responses:
        if response.status_code == 200:
            outcomes["served"] += 1
            if stream:
                assert sse_events(response)[-1][0] == "message_stop"
        else:
            outcomes[f"{response.status_code} {response.json()['error']['type']}"] += 1
    assert outcomes == {"served": 50, "429 rate_limit_error": 150}
    sql = (
        "SELECT t.status, t.cost_usd, t.protocol FROM traces t JOIN virtual_keys k ON t.key_id = k.key_id "
        f"WHERE k.name = '{key_name}'"
    )
    rows = rows_once_there(served, sql, "no traces")
    for _ in range(200):
        if len(rows) >= 200:
            break
        rows = rows_once_there(served, sql, "no traces")
    assert len(rows) == 200 and {row["protocol"] for row in rows} == {"messages"}
    assert Counter(row["status"] for row in rows) == {"ok": 50, "over_budget": 150}
    assert sum(row["cost_usd"] or 0 for row in rows) <= CAP


# --- bad input -------------------------------------------------------------------------------------


def tool_use_turn() -> dict[str, Any]:
    block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}
    return {"role": "assistant", "content": [block]}


BAD_REQUESTS: list[tuple[str, Any, str]] = [
    ("malformed JSON", b'{"model": "route:lab", "messages": [', "not valid JSON"),
    ("not an object", b"[1, 2]", "must be a JSON object"),
    ("no max_tokens", {"model": "route:lab", "messages": user("hi")}, "max_tokens"),
    ("max_tokens a string", {"model": "route:lab", "max_tokens": "10", "messages": user("hi")}, "max_tokens"),
    ("messages not a list", {"model": "route:lab", "max_tokens": 5, "messages": "hi"}, "messages"),
    ("a bad role", {"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
    (
        "an unknown block type",
        {"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "banana"}]}]},
        "'banana'",
    ),
    (
        "a tool_result without its tool_use",
        {
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}],
        },
        "toolu_x",
    ),
    (
        "a tool_result answering another id",
        {
            "max_tokens": 5,
            "messages": [
                *user("q"),
                tool_use_turn(),
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2"}]},
            ],
        },
        "toolu_2",
    ),
    ("temperature out of range", {"max_tokens": 5, "temperature": 3, "messages": user("hi")}, "temperature"),
    (
        "a server tool",
        {"max_tokens": 5, "tools": [{"type": "web_search_20250305"}], "messages": user("hi")},
        "tools",
    ),
    (
        "a bad tool_choice",
        {"max_tokens": 5, "tool_choice": {"type": "maybe"}, "messages": user("hi")},
        "tool_choice",
    ),
    ("system a number", {"max_tokens": 5, "system": 7, "messages": user("hi")}, "system"),
    ("stream a string", {"max_tokens": 5, "stream": "yes", "messages": user("hi")}, "stream"),
]


@pytest.mark.parametrize(("case", "body", "says"), BAD_REQUESTS, ids=[case for case, _, _ in BAD_REQUESTS])
def test_bad_input_gets_anthropic_s_envelope_and_one_trace(
    served: Served, case: str, body: Any, says: str
) -> None:
    response = post(served, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert says in error["error"]["message"]
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert trace["protocol"] == "messages" and trace["status"] == "error" and trace["http_status"] == 400


def test_the_sdk_raises_its_own_errors(served: Served) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(served).messages.create(model="route:lab", max_tokens=5, messages=[])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=served.url, api_key="fd-dev-wrong", max_retries=0).messages.create(
            model="route:lab", max_tokens=5, messages=user("hi")
        )
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(served).messages.create(model="nobody/nothing", max_tokens=5, messages=user("hi"))
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_a_route_of_another_environment_is_a_permission_error(served: Served) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        client(served).messages.create(model="route:prod_only", max_tokens=5, messages=user("hi"))
    assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


def test_a_missing_key_is_an_authentication_error_with_a_trace(served: Served) -> None:
    response = httpx.post(f"{served.url}/v1/messages", json={"max_tokens": 5, "messages": user("hi")})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in response.json()["error"]["message"]
    trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
    assert trace["protocol"] == "messages" and trace["http_status"] == 401


def test_a_bearer_token_works_as_well(served: Served) -> None:
    sdk = anthropic.Anthropic(base_url=served.url, auth_token=served.key, max_retries=0)
    message = sdk.messages.create(model="route:lab", max_tokens=5, messages=user("bearer works"))
    assert message.content[0].type == "text"


def test_an_oversized_body_is_request_too_large(served: Served) -> None:
    huge = (
        b'{"max_tokens": 5, "messages": [{"role": "user", "content": "' + b"x" * (9 * 1024 * 1024) + b'"}]}'
    )
    response = post(served, huge)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"


def test_upstream_errors_keep_anthropic_s_envelope(served: Served, claude: FakeAnthropic) -> None:
    claude.fail_next(1, Fault(status=529))
    with pytest.raises(anthropic.APIStatusError) as failed:
        client(served).messages.create(model="route:claude", max_tokens=5, messages=user("hi"))
    assert failed.value.status_code >= 500
    assert failed.value.body["type"] == "error"  # type: ignore[index]
    assert failed.value.body["error"]["type"] in ("api_error", "overloaded_error")  # type: ignore[index]


# --- honest streams ----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["route:claude", "route:lab"])
def test_an_upstream_cut_mid_stream_ends_with_an_error_event(
    served: Served, upstream: FakeOpenAI, claude: FakeAnthropic, route: str
) -> None:
    fake = claude if route == "route:claude" else upstream
    fake.fail_next(1, Fault(cut_after=4, stream=True))
    body = {"model": route, "max_tokens": 50, "stream": True, "messages": user("one two three four five six")}
    with httpx.stream(
        "POST", f"{served.url}/v1/messages", json=body, headers={"x-api-key": served.key}, timeout=60
    ) as response:
        events = sse_events(response)
        request_id = response.headers["x-fleetdeck-request-id"]
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "error"
    assert "message_stop" not in names and "message_delta" not in names
    assert events[-1][1]["type"] == "error" and events[-1][1]["error"]["type"]
    trace = trace_of(served, request_id)
    assert trace["status"] == "partial" and trace["protocol"] == "messages"
    with pytest.raises(anthropic.APIStatusError):  # the SDK sees the error event as an error
        fake.fail_next(1, Fault(cut_after=4, stream=True))
        with client(served).messages.stream(**{k: v for k, v in body.items() if k != "stream"}) as stream:
            stream.get_final_message()


def test_unknown_paths_and_methods_under_messages_answer_in_anthropics_envelope(served: Served) -> None:
    wrong_method = httpx.get(f"{served.url}/v1/messages", headers={"x-api-key": served.key}, timeout=30)
    unknown = post(served, {"requests": []}, path="/v1/messages/batches")
    expected = ((wrong_method, 405, "invalid_request_error"), (unknown, 404, "not_found_error"))
    for response, status, kind in expected:
        body = response.json()
        assert response.status_code == status
        assert body["type"] == "error" and body["error"]["type"] == kind
        trace = trace_of(served, response.headers["x-fleetdeck-request-id"])
        assert trace["error_type"] in ("method_not_allowed", "not_found") and trace["http_status"] == status
