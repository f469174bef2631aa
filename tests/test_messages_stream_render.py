"""Canonical stream events rendered as Anthropic's event sequence, without a server: the
renderer the Messages ingress streams through, fed the chunks the relay passes on."""

from __future__ import annotations

from typing import Any

import orjson

from console.gateway.call import End, Failed, KeepAlive, StreamEvent
from console.gateway.ingress.messages_reply import StreamRenderer
from console.gateway.openai_api import ApiError
from console.providers.base import NATIVE, Native


class _Trace:
    request_id = "01TESTREQUEST"


class _Call:
    trace = _Trace()


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", "choices": [choice], **extra}


def render(events: list[StreamEvent]) -> list[tuple[str, dict[str, Any]]]:
    renderer = StreamRenderer(_Call())  # type: ignore[arg-type]
    frames = b"".join(frame for event in events for frame in renderer.frames(event))
    pairs = []
    for block in frames.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        pairs.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return pairs


def test_thinking_and_text_never_share_a_block_and_the_end_reports_usage() -> None:
    usage = {"prompt_tokens": 30, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 10}}
    events = render(
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "let me think"}),
            chunk({"content": "Hello"}),
            chunk({"reasoning_content": "more thought"}),
            chunk({"content": " world"}),
            KeepAlive(),
            chunk({}, "stop"),
            {"id": "chatcmpl-1", "choices": [], "usage": usage},
            End(),
        ]
    )
    names = [name for name, _ in events]
    assert names.count("message_start") == 1 and names[0] == "message_start"
    starts = [data["content_block"]["type"] for name, data in events if name == "content_block_start"]
    assert starts == ["thinking", "text", "thinking", "text"]
    open_kind = None
    for name, data in events:  # every delta lands in a block of its own kind
        if name == "content_block_start":
            open_kind = data["content_block"]["type"]
        elif name == "content_block_delta":
            assert data["delta"]["type"] == {"thinking": "thinking_delta", "text": "text_delta"}[open_kind]
        elif name == "content_block_stop":
            open_kind = None
    assert "ping" in names
    delta = next(data for name, data in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"] == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
        "output_tokens": 7,
    }
    assert names[-1] == "message_stop"


def test_tool_calls_stream_as_tool_use_blocks_with_json_deltas() -> None:
    events = render(
        [
            chunk({"content": "Checking."}),
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk({}, "tool_calls"),
            End(),
        ]
    )
    starts = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert [block["type"] for block in starts] == ["text", "tool_use"]
    assert starts[1]["id"] == "call_1" and starts[1]["name"] == "f"
    pieces = [
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["index"] == 1
    ]
    assert "".join(pieces) == '{"a": 1}'
    assert (
        next(data for name, data in events if name == "message_delta")["delta"]["stop_reason"] == "tool_use"
    )


def test_a_broken_stream_ends_with_an_error_event_and_no_message_stop() -> None:
    failure = Failed(ApiError(502, "lab/m: connection reset", type_="api_error"))
    events = render([chunk({"content": "Hel"}), failure])
    names = [name for name, _ in events]
    assert names[-1] == "error" and "message_stop" not in names and "message_delta" not in names
    assert events[-1][1]["error"] == {"type": "api_error", "message": "lab/m: connection reset"}


def native(*events: dict[str, Any], **canonical: Any) -> dict[str, Any]:
    return {"id": "msg_up", "choices": [], **canonical, NATIVE: Native("messages", list(events))}


def test_an_upstream_s_own_events_pass_as_they_came_and_message_stop_waits_for_the_end() -> None:
    start = {"type": "message_start", "message": {"id": "msg_up", "type": "message", "content": []}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}
    events = render(
        [
            native(start),
            native(block),
            native(text),
            native({"type": "content_block_stop", "index": 0}),
            native(delta),
            native({"type": "message_stop"}),
            End(),
        ]
    )
    assert [data for _, data in events] == [
        start,
        block,
        text,
        {"type": "content_block_stop", "index": 0},
        delta,
        {"type": "message_stop"},
    ]
    cut = render(
        [
            native(start),
            native(block),
            native(text),
            native({"type": "message_stop"}),
            Failed(ApiError(502, "x")),
        ]
    )
    assert [name for name, _ in cut][-1] == "error" and "message_stop" not in [name for name, _ in cut]


def test_a_native_stream_whose_chunk_a_step_rewrote_goes_on_translated() -> None:
    start = {"type": "message_start", "message": {"id": "msg_up", "type": "message", "content": []}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    rewritten = chunk(
        {"tool_calls": [{"index": 0, "id": "call_9", "function": {"name": "f", "arguments": "{}"}}]}
    )
    events = render([native(start), native(block), native(text), rewritten, chunk({}, "tool_calls"), End()])
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",  # the upstream's open text block, closed
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[3][1]["index"] == 0 and events[4][1]["index"] == 1
    assert events[4][1]["content_block"]["type"] == "tool_use"
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
