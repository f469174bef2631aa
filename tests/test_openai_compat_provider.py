"""OpenAICompatProvider against the fake OpenAI upstream on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault

from console.providers.base import ErrorType, Provider, ProviderError, Usage
from console.providers.openai_compat import (
    OpenAICompatProvider,
    Redactor,
    environment_proxy,
    parse_retry_after,
)
from console.providers.sse import SSEDecoder, SSEEvent

KEY = "sk-test-Zq8dK2vN4mXr7TfB0pLs"
MODEL = "gpt-4o-mini"
BODY = {"messages": [{"role": "user", "content": "the quick brown fox jumps over the lazy dog"}]}
T = TypeVar("T")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: FakeOpenAI) -> None:
    fake.reset()


def with_provider(
    fake: FakeOpenAI,
    use: Callable[[OpenAICompatProvider], Awaitable[T]],
    base_url: str | None = None,
    **kw: Any,
) -> T:
    """Run `use(provider)` in a fresh event loop, closing the provider afterwards."""

    async def run() -> T:
        url = base_url or fake.base_url
        provider = OpenAICompatProvider("lab", url, KEY, [MODEL], **{"timeout_s": 10.0, **kw})
        try:
            return await use(provider)
        finally:
            await provider.aclose()

    return asyncio.run(run())


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def chat_error(fake: FakeOpenAI, fault: Fault, **kw: Any) -> ProviderError:
    fake.fail_next(1, fault)
    with pytest.raises(ProviderError) as caught:
        with_provider(fake, lambda p: p.chat(MODEL, BODY), **kw)
    return caught.value


def stream_error(fake: FakeOpenAI, fault: Fault) -> tuple[list[dict[str, Any]], ProviderError]:
    fake.fail_next(1, fault)
    received: list[dict[str, Any]] = []

    async def use(provider: OpenAICompatProvider) -> None:
        async for chunk in provider.chat_stream(MODEL, BODY):
            received.append(chunk)

    with pytest.raises(ProviderError) as caught:
        with_provider(fake, use)
    return received, caught.value


# --- happy paths --------------------------------------------------------------------------------------


def test_it_satisfies_the_provider_protocol_and_describes_itself_without_the_key(fake: FakeOpenAI) -> None:
    provider = OpenAICompatProvider("lab", "http://user:pw@127.0.0.1:9/v1", KEY, [MODEL, "gpt-4o"])
    assert isinstance(provider, Provider)
    assert provider.kind == "openai_compat"
    assert provider.models() == [MODEL, "gpt-4o"]
    described = orjson.dumps(provider.describe()).decode()
    assert KEY not in described
    assert "pw" not in described
    assert provider.describe()["base_url"] == "http://127.0.0.1:9/v1"
    asyncio.run(provider.aclose())


def test_chat_sends_the_model_and_key_and_returns_the_completion(fake: FakeOpenAI) -> None:
    body = {**BODY, "stream_options": {"include_usage": True}, "temperature": 0.2}
    result = with_provider(fake, lambda p: p.chat("resolved-model", body))
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["content"] == "the quick brown fox jumps over the lazy dog"
    assert Usage.from_openai(result["usage"]).output_tokens == 9
    sent = fake.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "resolved-model"
    assert sent.body["stream"] is False
    assert "stream_options" not in sent.body  # OpenAI rejects it without stream
    assert sent.body["temperature"] == 0.2


def test_a_cookie_an_upstream_sets_is_never_sent_with_a_later_call(fake: FakeOpenAI) -> None:
    """One provider carries many tenants' calls: nothing an answer sets may ride on the next."""
    fake.answer_headers = {"set-cookie": "session=tenant-a; Path=/"}

    async def twice(provider: OpenAICompatProvider) -> None:
        await provider.chat(MODEL, BODY)
        await provider.chat(MODEL, BODY)

    with_provider(fake, twice, base_url=fake.base_url.replace("127.0.0.1", "localhost"))  # a jar skips IPs
    assert len(fake.requests) == 2
    assert "cookie" not in fake.requests[-1].headers


def test_the_environments_proxy_is_the_providers_unless_no_proxy_names_its_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    found = environment_proxy("https://api.openai.com/v1")
    assert found is not None and str(found.url) == "http://proxy.corp:3128"
    assert environment_proxy("http://vllm.lan:8000/v1") is None  # HTTPS_PROXY is for https only
    monkeypatch.setenv("NO_PROXY", "openai.com")
    assert environment_proxy("https://api.openai.com/v1") is None


def test_stream_yields_chunks_and_a_final_usage_chunk(fake: FakeOpenAI) -> None:
    chunks = with_provider(fake, lambda p: collect(p.chat_stream(MODEL, BODY)))
    sent = fake.last_request.body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "the quick brown fox jumps over the lazy dog"
    assert chunks[-1]["choices"] == []
    assert Usage.from_openai(chunks[-1]["usage"]) == Usage(input_tokens=12, output_tokens=9)
    assert fake.wait_until(lambda: fake.streams_completed == 1)  # counted once its last write returned


def test_stream_keeps_the_clients_stream_options(fake: FakeOpenAI) -> None:
    body = {**BODY, "stream_options": {"include_usage": False, "include_obfuscation": False}}
    with_provider(fake, lambda p: collect(p.chat_stream(MODEL, body)))
    assert fake.last_request.body["stream_options"] == {"include_usage": True, "include_obfuscation": False}


def test_completion_embeddings_and_models(fake: FakeOpenAI) -> None:
    async def use(provider: OpenAICompatProvider) -> tuple[Any, Any]:
        completion = await provider.completion("instruct", {"prompt": "say this", "max_tokens": 1})
        embeddings = await provider.embeddings("text-embedding-3-small", {"input": ["a", "b c"]})
        return completion, embeddings

    completion, embeddings = with_provider(fake, use)
    assert completion["object"] == "text_completion"
    assert completion["choices"][0] == {
        "text": "say",
        "index": 0,
        "logprobs": None,
        "finish_reason": "length",
    }
    assert [d["index"] for d in embeddings["data"]] == [0, 1]
    assert embeddings["usage"]["prompt_tokens"] == 3
    assert [r.path for r in fake.requests] == ["/v1/completions", "/v1/embeddings"]


# --- error mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(status=429), ErrorType.rate_limited),
        (Fault(status=500), ErrorType.server_error),
        (Fault(status=502), ErrorType.server_error),
        (Fault(status=503), ErrorType.server_error),
        (Fault(status=504), ErrorType.server_error),
        (Fault(status=529), ErrorType.server_error),
        (Fault(status=408), ErrorType.timeout),
        (Fault(status=401), ErrorType.auth),
        (Fault(status=403), ErrorType.auth),
        (Fault(status=404), ErrorType.not_found),
        (Fault(status=400, error_code="context_length_exceeded"), ErrorType.context_length),
        (
            Fault(status=400, message="This model's maximum context length is 8192 tokens. However, you ..."),
            ErrorType.context_length,
        ),
        (Fault(status=400, error_code="content_filter"), ErrorType.content_filter),
        (Fault(status=400, error_code="content_policy_violation"), ErrorType.content_filter),
        (Fault(status=400, error_code="invalid_value"), ErrorType.bad_request),
        (Fault(status=422), ErrorType.bad_request),
        (Fault(status=413), ErrorType.bad_request),
    ],
    ids=lambda v: str(v.status if isinstance(v, Fault) else v),
)
def test_http_statuses_map_to_error_types(fake: FakeOpenAI, fault: Fault, expected: ErrorType) -> None:
    error = chat_error(fake, fault if fault.message else replace(fault, message="upstream says no"))
    assert error.error_type is expected
    assert error.status == fault.status
    assert (fault.message or "upstream says no")[:40] in error.message  # the upstream's own message


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(reset=True), ErrorType.connection),
        (Fault(close=True), ErrorType.connection),
        (Fault(cut_body=True), ErrorType.connection),
        (Fault(malformed=True), ErrorType.bad_response),
        (Fault(wrong_shape=True), ErrorType.bad_response),
    ],
    ids=["reset", "close", "cut-body", "not-json", "not-a-completion"],
)
def test_broken_responses_map_to_error_types(fake: FakeOpenAI, fault: Fault, expected: ErrorType) -> None:
    error = chat_error(fake, fault)
    assert error.error_type is expected
    assert error.error_type.retryable
    assert error.__cause__ is None  # the cause would carry the request, Authorization header included


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there

    async def use() -> None:
        provider = OpenAICompatProvider("lab", f"http://127.0.0.1:{port}/v1", KEY)
        try:
            await provider.chat(MODEL, BODY)
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as caught:
        asyncio.run(use())
    assert caught.value.error_type is ErrorType.connection


def test_a_slow_upstream_is_a_timeout(fake: FakeOpenAI) -> None:
    assert chat_error(fake, Fault(delay_s=1.0), timeout_s=0.2).error_type is ErrorType.timeout


def test_a_stream_stalling_before_its_first_chunk_is_a_timeout(fake: FakeOpenAI) -> None:
    fake.fail_next(1, Fault(first_chunk_delay_s=1.0))
    with pytest.raises(ProviderError) as caught:
        with_provider(fake, lambda p: collect(p.chat_stream(MODEL, BODY)), timeout_s=0.2)
    assert caught.value.error_type is ErrorType.timeout


def test_a_200_carrying_an_error_body_is_classified_by_its_code(fake: FakeOpenAI) -> None:
    provider = OpenAICompatProvider("lab", fake.base_url, KEY)
    with pytest.raises(ProviderError) as caught:
        provider.expect({"error": {"message": "Rate limit exceeded", "code": 429}}, "choices", "a completion")
    assert caught.value.error_type is ErrorType.rate_limited
    asyncio.run(provider.aclose())


# --- streams that fail --------------------------------------------------------------------------------


def test_a_stream_cut_mid_way_raises_connection_after_the_first_chunks(fake: FakeOpenAI) -> None:
    received, error = stream_error(fake, Fault(cut_after=3))
    assert len(received) == 3
    assert received[1]["choices"][0]["delta"]["content"] == "the"
    assert error.error_type is ErrorType.connection
    assert fake.streams_cut == 1


def test_a_stream_that_ends_without_done_is_a_connection_error(fake: FakeOpenAI) -> None:
    received, error = stream_error(fake, Fault(finish_after=4))
    assert len(received) == 4
    assert error.error_type is ErrorType.connection
    assert "[DONE]" in error.message


def test_a_malformed_data_line_is_a_bad_response(fake: FakeOpenAI) -> None:
    received, error = stream_error(fake, Fault(malformed=True))
    assert len(received) == 1
    assert error.error_type is ErrorType.bad_response


def test_an_error_inside_the_stream_raises(fake: FakeOpenAI) -> None:
    received, error = stream_error(fake, Fault(error_after=2, message="backend crashed"))
    assert len(received) == 2
    assert error.error_type is ErrorType.server_error
    assert "backend crashed" in error.message


def test_a_json_answer_to_a_streaming_request_is_a_bad_response(fake: FakeOpenAI) -> None:
    received, error = stream_error(fake, Fault(wrong_shape=True, stream=True))
    assert received == []
    assert error.error_type is ErrorType.bad_response


def test_an_error_status_on_a_stream_is_mapped_before_any_chunk(fake: FakeOpenAI) -> None:
    received, error = stream_error(fake, Fault(status=429, retry_after=7))
    assert received == []
    assert (error.error_type, error.status, error.retry_after_s) == (ErrorType.rate_limited, 429, 7.0)


# --- cancellation releases the upstream ---------------------------------------------------------------


def test_cancelling_a_stream_closes_the_upstream_connection(fake: FakeOpenAI) -> None:
    fake.fail_always(Fault(chunk_delay_s=0.05, stream=True))

    async def use(provider: OpenAICompatProvider) -> tuple[int, bool, int]:
        started = asyncio.Event()
        received: list[dict[str, Any]] = []

        async def consume() -> None:
            async for chunk in provider.chat_stream(MODEL, BODY):
                received.append(chunk)
                if len(received) == 2:
                    started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        closed = await fake.await_until(lambda: fake.streams_disconnected == 1 and fake.open_connections == 0)
        return len(received), closed, fake.streams_completed

    received, closed, completed = with_provider(fake, use)
    assert received == 2
    assert closed, "the fake never saw the client go away"
    assert completed == 0


def test_a_deadline_around_the_stream_closes_the_upstream_connection(fake: FakeOpenAI) -> None:
    fake.fail_always(Fault(chunk_delay_s=0.05, stream=True))

    async def use(provider: OpenAICompatProvider) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.12):
                await collect(provider.chat_stream(MODEL, BODY))
        return await fake.await_until(lambda: fake.streams_disconnected == 1 and fake.open_connections == 0)

    assert with_provider(fake, use)


def test_closing_a_stream_early_closes_the_upstream_connection(fake: FakeOpenAI) -> None:
    fake.fail_always(Fault(chunk_delay_s=0.05, stream=True))

    async def use(provider: OpenAICompatProvider) -> bool:
        async with contextlib.aclosing(provider.chat_stream(MODEL, BODY)) as stream:
            async for _ in stream:
                break
        return await fake.await_until(lambda: fake.streams_disconnected == 1 and fake.open_connections == 0)

    assert with_provider(fake, use)


def test_cancelling_a_plain_request_closes_the_upstream_connection(fake: FakeOpenAI) -> None:
    fake.fail_next(1, Fault(delay_s=2.0))

    async def use(provider: OpenAICompatProvider) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):
                await provider.chat(MODEL, BODY)
        return await fake.await_until(lambda: fake.open_connections == 0)

    assert with_provider(fake, use)


# --- connection pooling -------------------------------------------------------------------------------


def test_sequential_requests_and_streams_reuse_one_connection(fake: FakeOpenAI) -> None:
    before = fake.connections

    async def use(provider: OpenAICompatProvider) -> None:
        for _ in range(100):
            await provider.chat(MODEL, BODY)
        for _ in range(20):
            await collect(provider.chat_stream(MODEL, BODY))

    with_provider(fake, use)
    assert fake.request_count == 120
    assert fake.connections - before == 1
    assert {r.connection for r in fake.requests} == {before + 1}


def test_concurrent_requests_stay_within_max_connections(fake: FakeOpenAI) -> None:
    before = fake.connections

    async def use(provider: OpenAICompatProvider) -> None:
        await asyncio.gather(*(provider.chat(MODEL, BODY) for _ in range(200)))

    with_provider(fake, use, max_connections=4)
    assert fake.request_count == 200
    assert 1 <= fake.connections - before <= 4


# --- Retry-After and secrets --------------------------------------------------------------------------


def test_retry_after_header_forms() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": "12"})) == 12.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "1.5"})) == 1.5
    assert 28 <= (parse_retry_after(httpx.Headers({"Retry-After": soon})) or 0) <= 30
    assert parse_retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "-3"})) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"Retry-After": "inf"})) is None
    assert parse_retry_after(httpx.Headers({})) is None
    both = httpx.Headers({"Retry-After": "2", "retry-after-ms": "250"})
    assert parse_retry_after(both) == 0.25


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(status=429, retry_after=3), 3.0),
        (Fault(status=429, retry_after_ms=1500), 1.5),
        (Fault(status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), 0.0),
        (Fault(status=429), None),
    ],
)
def test_retry_after_reaches_the_error(fake: FakeOpenAI, fault: Fault, expected: float | None) -> None:
    assert chat_error(fake, fault).retry_after_s == expected


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
def test_the_api_key_never_appears_in_an_error(fake: FakeOpenAI, status: int) -> None:
    echo = "Incorrect API key provided: {authorization}. You can find your API key at ..."
    errors = [chat_error(fake, Fault(status=status, message=echo))]
    errors.append(stream_error(fake, Fault(status=status, message=echo))[1])
    errors.append(stream_error(fake, Fault(error_after=1, message=echo))[1])
    for error in errors:
        assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"  # the fake did echo it
        assert KEY not in error.message
        assert KEY not in str(error)
        assert KEY[3:15] not in repr(error.args)
        assert "[redacted]" in error.message


def test_redactor_masks_secrets_and_bearer_tokens() -> None:
    redact = Redactor(["secret-value-1", None, ""])
    assert redact("a secret-value-1 b") == "a [redacted] b"
    assert "sk-abcdefghijkl" not in redact("key sk-abcdefghijkl")
    assert redact("Authorization: Bearer xyz.123") == "Authorization: [redacted]"
    assert len(redact("x" * 5000)) <= 501


def test_sse_decoder_handles_split_chunks_crlf_comments_and_a_missing_final_blank_line() -> None:
    stream = b': keep-alive\r\n\r\nevent: delta\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: [DONE]'
    decoder = SSEDecoder()
    events = [event for i in range(len(stream)) for event in decoder.feed(stream[i : i + 1])]
    events += decoder.flush()
    assert events == [SSEEvent(b"delta", b'{"a":\n1}'), SSEEvent(b"", b"[DONE]")]


# --- the fake's own fault schedule (other suites rely on it) -------------------------------------------


def outcomes(fake: FakeOpenAI, n: int, pause_s: float = 0.0) -> list[str]:
    """The error type (or "ok") of n sequential chat calls."""

    async def use(provider: OpenAICompatProvider) -> list[str]:
        results = []
        for _ in range(n):
            try:
                await provider.chat(MODEL, BODY)
                results.append("ok")
            except ProviderError as error:
                results.append(str(error.error_type))
            await asyncio.sleep(pause_s)
        return results

    return with_provider(fake, use)


def test_fake_fault_schedules(fake: FakeOpenAI) -> None:
    fake.push(Fault(status=503), Fault(status=429), Fault(status=503, paths=("/v1/embeddings",)))
    assert outcomes(fake, 3) == ["server_error", "rate_limited", "ok"]
    assert fake.faults.pending == 1  # the embeddings-only fault is still waiting
    fake.clear_faults()

    fake.fail_for(1.0, Fault(status=503))
    timed = outcomes(fake, 60, pause_s=0.05)  # 3 s at least: the window closes within them
    first_ok = timed.index("ok")
    assert timed[0] == "server_error"
    assert set(timed[:first_ok]) == {"server_error"} and set(timed[first_ok:]) == {"ok"}

    fake.fail_always(Fault(status=500))
    assert set(outcomes(fake, 20)) == {"server_error"}
    fake.clear_faults()
    assert outcomes(fake, 1) == ["ok"]

    fake.fail_ratio(0.5, Fault(status=500), seed=7)
    failed = outcomes(fake, 200).count("server_error")
    assert 60 < failed < 140


def test_fake_checks_the_api_key_when_given_one() -> None:
    with FakeOpenAI(api_key="sk-right-key-000") as guarded:
        assert outcomes(guarded, 1) == ["auth"]
        assert guarded.last_request.headers["authorization"] == f"Bearer {KEY}"
