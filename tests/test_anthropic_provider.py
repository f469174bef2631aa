"""AnthropicProvider: translation both ways, and the provider against the fake Messages API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import orjson
import pytest
from fakes.anthropic_upstream import FakeAnthropic, Fault

from console.providers.anthropic import AnthropicProvider, StreamTranslator, from_anthropic, to_anthropic
from console.providers.base import ErrorType, Provider, ProviderError, Usage

KEY = "sk-ant-api03-Hk29sLq0Vb7XwPz3MnR5"
MODEL = "claude-sonnet-4-5"
T = TypeVar("T")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "crm_lookup",
            "description": "Find a customer",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeAnthropic) -> None:
    fake.reset()
    fake.cache_read_tokens = 0


def with_provider(fake: FakeAnthropic, use: Callable[[AnthropicProvider], Awaitable[T]]) -> T:
    async def run() -> T:
        provider = AnthropicProvider("anthropic", fake.base_url, KEY, [MODEL], timeout_s=10.0)
        try:
            return await use(provider)
        finally:
            await provider.aclose()

    return asyncio.run(run())


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def error_of(fake: FakeAnthropic, fault: Fault, *, stream: bool = False) -> ProviderError:
    fake.fail_next(1, fault)

    async def use(provider: AnthropicProvider) -> object:
        if stream:
            return await collect(provider.chat_stream(MODEL, chat("hello there")))
        return await provider.chat(MODEL, chat("hello there"))

    with pytest.raises(ProviderError) as caught:
        with_provider(fake, use)
    return caught.value


# --- OpenAI → Anthropic -------------------------------------------------------------------------------


def test_request_translation_of_a_tool_conversation() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "You are support."},
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Who is ACME?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "crm_lookup", "arguments": '{"query": "ACME"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "crm_lookup", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ACME: gold tier"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "none"}]},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
        "max_tokens": 300,
        "temperature": 1.7,
        "top_p": 0.9,
        "stop": "END",
        "user": "u-42",
    }
    request = to_anthropic(MODEL, body)
    assert request["system"] == "You are support.\n\nBe brief."
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    assert request["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "crm_lookup", "input": {"query": "ACME"}},
        {"type": "tool_use", "id": "call_2", "name": "crm_lookup", "input": {}},
    ]
    assert request["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "ACME: gold tier"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "none"},
        {"type": "text", "text": "Thanks"},
    ]
    assert request["tools"] == [
        {
            "name": "crm_lookup",
            "description": "Find a customer",
            "input_schema": TOOLS[0]["function"]["parameters"],  # type: ignore[index]
        }
    ]
    assert request["tool_choice"] == {"type": "auto"}
    assert (request["max_tokens"], request["temperature"], request["top_p"]) == (300, 1.0, 0.9)
    assert request["stop_sequences"] == ["END"]
    assert request["metadata"] == {"user_id": "u-42"}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "crm_lookup"}},
            None,
            {"type": "tool", "name": "crm_lookup"},
        ),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tool_choice_translation(choice: Any, parallel: Any, expected: Any) -> None:
    body = chat("hi", tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel)
    assert to_anthropic(MODEL, body).get("tool_choice") == expected


def test_defaults_and_limits() -> None:
    assert to_anthropic(MODEL, chat("hi"))["max_tokens"] == 1024
    assert to_anthropic(MODEL, chat("hi"), default_max_tokens=64)["max_tokens"] == 64
    assert to_anthropic(MODEL, chat("hi", max_completion_tokens=99, max_tokens=5))["max_tokens"] == 99
    assert to_anthropic(MODEL, chat("hi", stop=["a", " ", "b"]))["stop_sequences"] == ["a", "b"]
    assert "system" not in to_anthropic(MODEL, chat("hi"))


def test_images_become_image_blocks() -> None:
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    blocks = to_anthropic(MODEL, {"messages": [{"role": "user", "content": parts}]})["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}


@pytest.mark.parametrize(
    "body",
    [
        {"messages": []},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}
            ]
        },
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{"}}],
                }
            ]
        },
        {"messages": [{"role": "tool", "content": "orphan"}]},
        {"messages": [{"role": "function", "content": "legacy"}]},
        {"messages": [{"role": "user", "content": "hi"}], "n": 2},
        {"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "code_interpreter"}]},
        {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS, "tool_choice": "sometimes"},
    ],
    ids=[
        "empty",
        "audio",
        "ftp-image",
        "bad-arguments",
        "no-tool-call-id",
        "function-role",
        "n",
        "tool-type",
        "choice",
    ],
)
def test_untranslatable_requests_are_bad_requests(body: dict[str, Any]) -> None:
    with pytest.raises(ProviderError) as caught:
        to_anthropic(MODEL, body)
    assert caught.value.error_type is ErrorType.bad_request


# --- Anthropic → OpenAI -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"), ("stop_sequence", "stop")],
)
def test_response_translation(stop_reason: str, finish_reason: str) -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Looking it up."},
            {"type": "tool_use", "id": "toolu_1", "name": "crm_lookup", "input": {"query": "ACME", "n": 2}},
        ],
        "stop_reason": stop_reason,
        "usage": {
            "input_tokens": 100,
            "cache_read_input_tokens": 400,
            "cache_creation_input_tokens": 50,
            "output_tokens": 20,
        },
    }
    result = from_anthropic(message, MODEL)
    choice = result["choices"][0]
    assert result["object"] == "chat.completion"
    assert result["id"] == "msg_1"
    assert choice["finish_reason"] == finish_reason
    assert choice["message"]["content"] == "Looking it up."
    assert choice["message"]["reasoning_content"] == "hmm"
    call = choice["message"]["tool_calls"][0]
    assert (call["id"], call["type"], call["function"]["name"]) == ("toolu_1", "function", "crm_lookup")
    assert orjson.loads(call["function"]["arguments"]) == {"query": "ACME", "n": 2}
    assert result["usage"]["prompt_tokens_details"] == {"cached_tokens": 400, "cache_write_tokens": 50}
    assert Usage.from_openai(result["usage"]) == Usage(
        input_tokens=550, output_tokens=20, cache_read_tokens=400, cache_write_tokens=50
    )


def test_a_tool_only_answer_has_null_content() -> None:
    message = {
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
        "stop_reason": "tool_use",
    }
    reply = from_anthropic(message, MODEL)["choices"][0]["message"]
    assert reply["content"] is None
    assert reply["tool_calls"][0]["function"]["arguments"] == "{}"


def test_a_body_that_is_not_a_message_is_a_bad_response() -> None:
    with pytest.raises(ProviderError) as caught:
        from_anthropic({"type": "banana"}, MODEL)
    assert caught.value.error_type is ErrorType.bad_response


def test_stream_translation_of_text_and_tool_argument_deltas() -> None:
    events = [
        {
            "type": "message_start",
            "message": {"id": "msg_9", "model": MODEL, "usage": {"input_tokens": 50, "output_tokens": 1}},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "crm_lookup", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"que'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'ry": "ACME"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 31}},
        {"type": "message_stop"},
    ]
    translator = StreamTranslator(MODEL)
    chunks = [chunk for event in events if (chunk := translator.handle(event)) is not None]
    assert translator.finished
    assert all(c["id"] == "msg_9" and c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Checking"}
    assert deltas[2]["tool_calls"][0] == {
        "index": 0,
        "id": "toolu_9",
        "type": "function",
        "function": {"name": "crm_lookup", "arguments": ""},
    }
    arguments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d)
    assert orjson.loads(arguments) == {"query": "ACME"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert Usage.from_openai(chunks[-1]["usage"]) == Usage(input_tokens=50, output_tokens=31)


# --- against the fake ---------------------------------------------------------------------------------


def test_it_is_a_provider_that_hides_its_key() -> None:
    provider = AnthropicProvider("anthropic", api_key=KEY, models=[MODEL])
    assert isinstance(provider, Provider)
    assert provider.kind == "anthropic"
    assert provider.models() == [MODEL]
    assert KEY not in orjson.dumps(provider.describe()).decode()
    asyncio.run(provider.aclose())


def test_chat_round_trip_with_headers_and_cached_tokens(fake: FakeAnthropic) -> None:
    fake.cache_read_tokens = 7
    body = {
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hello there"}]
    }
    result = with_provider(fake, lambda p: p.chat(MODEL, body))
    sent = fake.last_request
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.body["system"] == "Be terse."
    assert sent.body["max_tokens"] == 1024
    assert "stream" not in sent.body
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "hello there"}
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["prompt_tokens_details"]["cached_tokens"] == 7


def test_chat_with_a_required_tool_returns_tool_calls(fake: FakeAnthropic) -> None:
    body = chat("find ACME corp", tools=TOOLS, tool_choice="required")
    result = with_provider(fake, lambda p: p.chat(MODEL, body))
    choice = result["choices"][0]
    assert fake.last_request.body["tool_choice"] == {"type": "any"}
    assert choice["finish_reason"] == "tool_calls"
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "query": "find ACME corp"
    }


def test_stream_with_tool_call_reassembles_the_arguments(fake: FakeAnthropic) -> None:
    body = chat("please crm_lookup the account", tools=TOOLS)
    chunks = with_provider(fake, lambda p: collect(p.chat_stream(MODEL, body)))
    assert fake.last_request.body["stream"] is True
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "crm_lookup"
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert orjson.loads(arguments) == {"query": "please crm_lookup the account"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert fake.wait_until(lambda: fake.streams_completed == 1)  # counted once its last write returned


def test_stream_text_and_usage(fake: FakeAnthropic) -> None:
    chunks = with_provider(fake, lambda p: collect(p.chat_stream(MODEL, chat("one two three", max_tokens=2))))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert Usage.from_openai(chunks[-1]["usage"]).output_tokens == 2


def test_completion_and_embeddings(fake: FakeAnthropic) -> None:
    result = with_provider(fake, lambda p: p.completion(MODEL, {"prompt": ["alpha beta"], "max_tokens": 5}))
    assert result["object"] == "text_completion"
    assert result["choices"][0]["text"] == "alpha beta"
    assert fake.last_request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "alpha beta"}]}
    ]
    with pytest.raises(ProviderError) as caught:
        with_provider(fake, lambda p: p.embeddings(MODEL, {"input": "x"}))
    assert caught.value.error_type is ErrorType.bad_request
    assert "no embeddings" in caught.value.message


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(status=429, retry_after=4), ErrorType.rate_limited),
        (Fault(status=529), ErrorType.server_error),
        (Fault(status=500), ErrorType.server_error),
        (Fault(status=401), ErrorType.auth),
        (Fault(status=403), ErrorType.auth),
        (Fault(status=404), ErrorType.not_found),
        (Fault(status=413), ErrorType.bad_request),
        (Fault(status=400), ErrorType.bad_request),
        (
            Fault(status=400, message="prompt is too long: 212000 tokens > 200000 maximum"),
            ErrorType.context_length,
        ),
        (Fault(reset=True), ErrorType.connection),
        (Fault(malformed=True), ErrorType.bad_response),
        (Fault(wrong_shape=True), ErrorType.bad_response),
    ],
)
def test_errors_map_to_error_types(fake: FakeAnthropic, fault: Fault, expected: ErrorType) -> None:
    error = error_of(fake, fault)
    assert error.error_type is expected
    assert error.status == fault.status
    if fault.status:
        assert "The fake upstream answered" in error.message or (fault.message or "") in error.message
    if fault.retry_after:
        assert error.retry_after_s == 4.0


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(cut_after=4), ErrorType.connection),
        (Fault(finish_after=4), ErrorType.connection),
        (Fault(malformed=True), ErrorType.bad_response),
        (Fault(error_after=4), ErrorType.server_error),
        (Fault(error_after=4, error_code="rate_limit_error", message="slow down"), ErrorType.rate_limited),
        (Fault(status=529), ErrorType.server_error),
    ],
    ids=["cut", "no-message-stop", "malformed", "overloaded-event", "rate-limit-event", "529"],
)
def test_stream_failures(fake: FakeAnthropic, fault: Fault, expected: ErrorType) -> None:
    assert error_of(fake, fault, stream=True).error_type is expected


def test_the_api_key_never_appears_in_an_error(fake: FakeAnthropic) -> None:
    echo = "invalid x-api-key: {x_api_key}"
    for fault, stream in [
        (Fault(status=401, message=echo), False),
        (Fault(status=400, message=echo), True),
        (Fault(error_after=2, message=echo), True),
    ]:
        error = error_of(fake, fault, stream=stream)
        assert fake.requests[-1].headers["x-api-key"] == KEY
        assert KEY not in str(error)
        assert "[redacted]" in error.message


def test_cancelling_a_stream_closes_the_upstream_connection(fake: FakeAnthropic) -> None:
    fake.fail_always(Fault(chunk_delay_s=0.05))

    async def use(provider: AnthropicProvider) -> bool:
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in provider.chat_stream(MODEL, chat("a b c d e f g h i j k l")):
                started.set()

        consuming = asyncio.create_task(consume())
        await started.wait()  # cancelled mid-stream, however slow the box
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
        return await fake.await_until(lambda: fake.streams_disconnected == 1 and fake.open_connections == 0)

    assert with_provider(fake, use)
