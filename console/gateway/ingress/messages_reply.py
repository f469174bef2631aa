"""The canonical answer, stream and refusals in the Anthropic Messages API's shapes.

An answer is a `message`: `reasoning_content` → a `thinking` block, text → a `text`
block, tool calls → `tool_use` blocks (arguments parsed back into `input`); finish
reasons → stop reasons (stop → end_turn, length → max_tokens, tool_calls → tool_use,
content_filter → refusal); usage → Anthropic's, where `input_tokens` counts only the
uncached input, beside `cache_read_input_tokens` and `cache_creation_input_tokens`.

A stream is Anthropic's event sequence: `message_start` once, then per content block
`content_block_start`, its deltas (`thinking_delta`, `text_delta`, `input_json_delta`)
and `content_block_stop` (a new kind of content closes the open block, so thinking
never lands inside a text block), `message_delta` with the stop reason and the final
usage, `message_stop`; `ping` while the gateway waits. `message_stop` is sent only on a
clean end: a stream that breaks ends with an `error` event. When the upstream spoke
the Messages API itself, its own events pass through as they came (`Native`), with
their thinking signatures.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from console.gateway.call import Call, End, Failed, KeepAlive, StreamEvent
from console.gateway.openai_api import ApiError
from console.providers.base import NATIVE, Body, Native, Usage

PROTOCOL = "messages"
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(error: ApiError, request_id: str | None = None) -> Body:
    kind = ERROR_TYPES.get(error.status) or ("api_error" if error.status >= 500 else "invalid_request_error")
    body: Body = {"type": "error", "error": {"type": kind, "message": error.message}}
    if request_id:
        body["request_id"] = request_id
    return body


def usage_of(usage: Body | None) -> Body:
    """Canonical (OpenAI) usage as Anthropic's: input_tokens without the cached ones."""
    counted = Usage.from_openai(usage)
    uncached = counted.input_tokens - counted.cache_read_tokens - counted.cache_write_tokens
    reply: Body = {
        "input_tokens": max(uncached, 0),
        "cache_creation_input_tokens": counted.cache_write_tokens,
        "cache_read_input_tokens": counted.cache_read_tokens,
        "output_tokens": counted.output_tokens,
    }
    if counted.reasoning_tokens:
        reply["output_tokens_details"] = {"thinking_tokens": counted.reasoning_tokens}
    return reply


def message_id(answer_id: Any, request_id: str) -> str:
    return answer_id if isinstance(answer_id, str) and answer_id.startswith("msg_") else f"msg_{request_id}"


def message(call: Call) -> Body:
    """The call's answer as a Messages API `message`: the upstream's own when it still says the same."""
    answer = call.answer
    assert answer is not None
    native = call.native_answer
    if isinstance(native, Native) and native.protocol == PROTOCOL and native.fits_answer(answer):
        return dict(native.body)
    choice = (answer.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content = _thinking(reply) + _text(reply) + [_tool_use(c) for c in reply.get("tool_calls") or ()]
    return {
        "id": message_id(answer.get("id"), call.trace.request_id),
        "type": "message",
        "role": "assistant",
        "model": answer.get("model") or (call.target.model if call.target else ""),
        "content": content,
        "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
        "stop_sequence": None,
        "usage": usage_of(answer.get("usage")),
    }


def _thinking(reply: Body) -> list[Body]:
    thinking = reply.get("reasoning_content") or reply.get("reasoning")
    return [{"type": "thinking", "thinking": thinking, "signature": ""}] if isinstance(thinking, str) else []


def _text(reply: Body) -> list[Body]:
    text = reply.get("content")
    if isinstance(text, list):  # content parts
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text or not reply.get("tool_calls"):
        return [{"type": "text", "text": text or ""}]
    return []


def _tool_use(call: Body) -> Body:
    function = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id") or "",
        "name": function.get("name") or "",
        "input": _input(function.get("arguments")),
    }


def _input(arguments: Any) -> Body:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_unparsed_arguments": str(arguments)}


def sse(name: str, data: Body) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = sse("ping", {"type": "ping"})


async def stream(call: Call, events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    """Canonical stream events as Anthropic's server-sent events."""
    renderer = StreamRenderer(call)
    try:
        async for event in events:
            for frame in renderer.frames(event):
                yield frame
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


class StreamRenderer:
    """One stream's state: the open content block, the stop reason and usage seen so far."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.started = False
        self.block: str | None = None  # thinking | text | tool_use: the open block's kind
        self.index = -1
        self.tools: dict[int, int] = {}  # canonical tool_calls index → content block index
        self.finish: str | None = None
        self.usage: Body | None = None
        self.model = ""
        self.held_stop: Body | None = None  # an upstream's own message_stop, sent on a clean end
        self.delta_sent = False  # the upstream's own message_delta went out

    def frames(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, dict):
            native = event.get(NATIVE)
            if isinstance(native, Native) and native.protocol == PROTOCOL:
                self._track(event)
                return self._native(native)
            return self._chunk(event)
        if isinstance(event, KeepAlive):
            return [PING]
        if isinstance(event, Failed):
            return [sse("error", error_body(event.error, self.call.trace.request_id))]
        assert isinstance(event, End)
        return self._end()

    # -- the upstream's own events ----------------------------------------------------------

    def _native(self, native: Native) -> list[bytes]:
        """The upstream's events as they came, with the block state kept, so that a stream whose
        later chunks a step rewrote (and so stripped of their native events) goes on translated."""
        frames = []
        for upstream in native.body:
            kind = str(upstream.get("type"))
            if kind == "message_stop":
                self.held_stop = upstream
                continue
            if kind == "message_start":
                self.started = True
            elif kind == "content_block_start":
                self.index = int(upstream.get("index") or 0)
                self.block = str((upstream.get("content_block") or {}).get("type"))
            elif kind == "content_block_stop":
                self.block = None
            elif kind == "message_delta":
                self.delta_sent = True
            frames.append(sse(kind, upstream))
        return frames

    # -- translated from canonical chunks -----------------------------------------------------

    def _track(self, chunk: Body) -> None:
        self.model = self.model or str(chunk.get("model") or "")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if int(choice.get("index") or 0) == 0 and choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])

    def _chunk(self, chunk: Body) -> list[bytes]:
        frames = [] if self.started else [self._start(chunk)]
        self.held_stop = None  # from here on the stream is translated: it ends with Fleetdeck's own
        self._track(chunk)
        for choice in chunk.get("choices") or ():
            if int(choice.get("index") or 0) == 0:  # a Messages client asks for one answer
                frames += self._delta(choice.get("delta") or {})
        return frames

    def _start(self, chunk: Body) -> bytes:
        self.started = True
        start: Body = {
            "id": message_id(chunk.get("id"), self.call.trace.request_id),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},  # the final counts come in message_delta
        }
        return sse("message_start", {"type": "message_start", "message": start})

    def _delta(self, delta: Body) -> list[bytes]:
        frames: list[bytes] = []
        thinking = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thinking, str) and thinking:
            frames += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            frames.append(self._block_delta({"type": "thinking_delta", "thinking": thinking}))
        text = delta.get("content")
        if isinstance(text, str) and text:
            frames += self._open("text", {"type": "text", "text": ""})
            frames.append(self._block_delta({"type": "text_delta", "text": text}))
        for tool_call in delta.get("tool_calls") or ():
            frames += self._tool_delta(tool_call)
        return frames

    def _tool_delta(self, tool_call: Body) -> list[bytes]:
        frames: list[bytes] = []
        position = int(tool_call.get("index") or 0)
        function = tool_call.get("function") or {}
        if position not in self.tools:
            block = {"type": "tool_use", "id": tool_call.get("id") or "", "name": function.get("name") or ""}
            frames += self._open("tool_use", {**block, "input": {}}, force=True)
            self.tools[position] = self.index
        elif self.tools[position] != self.index:
            return frames  # a late piece of an earlier call: Anthropic streams one block at a time
        arguments = function.get("arguments")
        if arguments:
            frames.append(self._block_delta({"type": "input_json_delta", "partial_json": arguments}))
        return frames

    def _open(self, kind: str, block: Body, force: bool = False) -> list[bytes]:
        if self.block == kind and not force:
            return []
        frames = self._close()
        self.index += 1
        self.block = kind
        frames.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": self.index, "content_block": block},
            )
        )
        return frames

    def _close(self) -> list[bytes]:
        if self.block is None:
            return []
        self.block = None
        return [sse("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _block_delta(self, delta: Body) -> bytes:
        return sse(
            "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}
        )

    def _end(self) -> list[bytes]:
        if self.held_stop is not None:  # the upstream's own stream: its events said it all
            return [sse("message_stop", self.held_stop)]
        if self.delta_sent:
            return [sse("message_stop", {"type": "message_stop"})]
        frames = [] if self.started else [self._start({"created": int(time.time())})]
        frames += self._close()
        delta = {"stop_reason": STOP_REASONS.get(self.finish or "stop", "end_turn"), "stop_sequence": None}
        frames.append(
            sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage_of(self.usage)})
        )
        frames.append(sse("message_stop", {"type": "message_stop"}))
        return frames
