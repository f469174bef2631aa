"""A fake Anthropic Messages API on 127.0.0.1: `POST /v1/messages`, JSON or an SSE event stream.

Same machinery and fault API as `fakes.openai_upstream` (see there): `Fault`,
`fail_next`, `fail_for`, `fail_always`, `push`, `requests`, counters. What differs:

- `base_url` is the root (`http://127.0.0.1:PORT`); the provider appends `/v1/messages`.
- Error bodies have Anthropic's shape `{"type": "error", "error": {"type", "message"}}`,
  the type following the status (429 rate_limit_error, 529 overloaded_error, …) unless
  `Fault.error_code` names it.
- `cut_after=K` closes the connection after K stream events, `finish_after=K` ends the
  response cleanly after K events (no message_stop); `error_after=K` sends an
  `event: error` (overloaded_error unless `error_code` says otherwise) after K events;
  `malformed` puts an event whose data is not JSON after `message_start`.
- The answer echoes the last user text. When the request has tools and tool_choice is
  `any` or `tool`, or the last user text names a tool, the answer is a `tool_use` block
  with input `{"query": <last user text>}` (streamed as `input_json_delta` pieces) after
  a short text block, and stop_reason `tool_use`.
- `fake.cache_read_tokens = N` reports N `cache_read_input_tokens` in every usage,
  `fake.cache_write_tokens = N` N `cache_creation_input_tokens`.
- A request with `thinking: {type: enabled}` is answered with a `thinking` block first
  (text `THINKING`, signature `SIGNATURE`; streamed as `thinking_delta` + `signature_delta`),
  and `usage.output_tokens_details.thinking_tokens` counts its 5 tokens (in output_tokens).
- `POST /v1/messages/count_tokens` answers `{"input_tokens": N}`, N counted as in usage.

    with FakeAnthropic() as fake:
        provider = AnthropicProvider("anthropic", fake.base_url, api_key="sk-ant-test")
        fake.fail_next(1, Fault(status=529))
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from fakes.openai_upstream import JSON, Body, FakeUpstream, Fault, limit_words, sse, words

__all__ = ["FakeAnthropic", "Fault"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class FakeAnthropic(FakeUpstream):
    def __init__(self, *, port: int = 0, api_key: str | None = None, **kw: Any) -> None:
        super().__init__(port=port, api_key=api_key, **kw)
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.endpoint(self._messages))
        app.router.add_post("/v1/messages/count_tokens", self.endpoint(self._count_tokens))

    async def _count_tokens(self, request: web.Request, body: Any, fault: Fault | None) -> web.StreamResponse:
        if not isinstance(body, dict) or not body.get("messages"):
            return self.error_response(request, Fault(status=400, message="messages are required"))
        return web.json_response({"input_tokens": _input_tokens(body)})

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("x-api-key") == self.api_key

    def error_response(self, request: web.Request, fault: Fault) -> web.Response:
        status = fault.status or 500
        kind = fault.error_code or _ERROR_TYPES.get(status, "api_error")
        message = self.error_message(request, fault, f"The fake upstream answered {status}.")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return web.Response(
            status=status, body=orjson.dumps(body), content_type=JSON, headers=fault.headers()
        )

    async def _messages(self, request: web.Request, body: Any, fault: Fault | None) -> web.StreamResponse:
        if not isinstance(body, dict) or not body.get("messages") or not body.get("max_tokens"):
            return self.error_response(
                request, Fault(status=400, message="messages and max_tokens are required")
            )
        stream = bool(body.get("stream"))
        if fault is not None and not stream and fault.malformed:
            return web.Response(body=b'{"id": "msg_broken", "content": [', content_type=JSON)
        if fault is not None and not stream and fault.wrong_shape:
            return web.Response(body=b'{"type": "banana"}', content_type=JSON)
        answer = _Message(body, next(self._ids), self.cache_read_tokens, self.cache_write_tokens)
        if stream:
            return await self.send_events(request, self._events(request, answer, fault), fault)
        return await self.send_json(request, answer.message(), fault)

    def _events(self, request: web.Request, answer: _Message, fault: Fault | None) -> list[bytes]:
        events = [sse(event, event["type"]) for event in answer.events()]
        if fault is not None and fault.malformed:
            events.insert(1, b"event: content_block_delta\ndata: {not json\n\n")
        if fault is not None and fault.error_after is not None:
            error = {
                "type": fault.error_code or "overloaded_error",
                "message": self.error_message(request, fault, "Overloaded"),
            }
            events = [*events[: fault.error_after], sse({"type": "error", "error": error}, "error")]
        return events


THINKING = "THINKING"
SIGNATURE = "SIGNATURE"
THINKING_TOKENS = 5


def _input_tokens(body: Body) -> int:
    messages = body.get("messages") or []
    return sum(3 + words(_text(m.get("content"))) for m in messages if isinstance(m, dict)) + words(
        _text(body.get("system"))
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


class _Message:
    """The deterministic answer to one Messages request, as a message or as stream events."""

    def __init__(self, body: Body, number: int, cache_read: int, cache_write: int = 0) -> None:
        self.id = f"msg_fake{number}"
        self.model = body.get("model") or "claude-fake"
        messages = body["messages"]
        user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        self.text = _text(user[-1].get("content")) if user else ""
        self.input_tokens = _input_tokens(body)
        self.cache_read, self.cache_write = cache_read, cache_write
        self.thinking = (body.get("thinking") or {}).get("type") == "enabled"
        self.tool = _chosen_tool(body, self.text)
        self.tool_id = f"toolu_fake{number}"
        if self.tool:
            self.pieces, cut = ["Let me check."], False
        else:
            self.pieces, cut = limit_words(self.text, body.get("max_tokens"))
        stop = _stop_at(self.pieces, body.get("stop_sequences"))
        self.stop_sequence = stop[1] if stop else None
        self.pieces = stop[0] if stop else self.pieces
        self.stop_reason = (
            "tool_use" if self.tool else "stop_sequence" if stop else "max_tokens" if cut else "end_turn"
        )
        self.output_tokens = (
            len(self.pieces) + (10 if self.tool else 0) + (THINKING_TOKENS if self.thinking else 0)
        )

    def usage(self, output_tokens: int) -> Body:
        usage: Body = {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output_tokens,
        }
        if self.thinking:
            usage["output_tokens_details"] = {"thinking_tokens": THINKING_TOKENS}
        return usage

    def _tool_input(self) -> Body:
        return {"query": self.text}

    def message(self) -> Body:
        content: list[Body] = [{"type": "text", "text": "".join(self.pieces)}] if self.pieces else []
        if self.thinking:
            content.insert(0, {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE})
        if self.tool:
            content.append(
                {"type": "tool_use", "id": self.tool_id, "name": self.tool, "input": self._tool_input()}
            )
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": self.usage(self.output_tokens),
        }

    def events(self) -> Iterator[Body]:
        start = {
            **self.message(),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self.usage(1),
        }
        yield {"type": "message_start", "message": start}
        text = 0
        if self.thinking:
            text = 1
            block = {"type": "thinking", "thinking": "", "signature": ""}
            yield {"type": "content_block_start", "index": 0, "content_block": block}
            yield {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": THINKING},
            }
            yield {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": SIGNATURE},
            }
            yield {"type": "content_block_stop", "index": 0}
        yield {"type": "content_block_start", "index": text, "content_block": {"type": "text", "text": ""}}
        yield {"type": "ping"}
        for piece in self.pieces:
            yield {
                "type": "content_block_delta",
                "index": text,
                "delta": {"type": "text_delta", "text": piece},
            }
        yield {"type": "content_block_stop", "index": text}
        if self.tool:
            yield from self._tool_events(text + 1)
        delta = {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence}
        yield {"type": "message_delta", "delta": delta, "usage": {"output_tokens": self.output_tokens}}
        yield {"type": "message_stop"}

    def _tool_events(self, index: int) -> Iterator[Body]:
        block: Body = {"type": "tool_use", "id": self.tool_id, "name": self.tool, "input": {}}
        yield {"type": "content_block_start", "index": index, "content_block": block}
        arguments = orjson.dumps(self._tool_input()).decode()
        third = max(1, len(arguments) // 3)
        for start in range(0, len(arguments), third):
            delta = {"type": "input_json_delta", "partial_json": arguments[start : start + third]}
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        yield {"type": "content_block_stop", "index": index}


def _chosen_tool(body: Body, text: str) -> str | None:
    names = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not names or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        return str(choice.get("name"))
    if choice.get("type") == "any":
        return str(names[0])
    return next((str(name) for name in names if str(name) in text), None)


def _stop_at(pieces: list[str], stops: Any) -> tuple[list[str], str] | None:
    """Pieces up to the first stop sequence that is one of the words, and that sequence."""
    for index, piece in enumerate(pieces):
        if isinstance(stops, list) and piece.strip() in stops:
            return pieces[:index], piece.strip()
    return None
