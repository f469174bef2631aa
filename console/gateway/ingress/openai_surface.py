"""The OpenAI surface's shared shapes: JSON bodies, server-sent events, the error envelope.

Chat Completions, Completions and Embeddings differ only in the request field they
require and whether they stream; their modules say that and reuse this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from console.gateway import openai_api
from console.gateway.call import Call, CanonicalRequest, End, KeepAlive, StreamEvent
from console.gateway.ingress.base import Reply
from console.gateway.openai_api import ApiError
from console.providers.base import Body

SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEP_ALIVE = b": keep-alive\n\n"  # a comment: clients ignore it, proxies see traffic
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True)
class OpenAIIngress:
    path: str
    operation: str
    protocol: str
    field: str  # the request field the operation requires

    def parse(self, raw: bytes) -> CanonicalRequest:
        body = openai_api.parse_body(raw)
        check_request(self.operation, self.field, body)
        return CanonicalRequest(self.operation, body, len(raw))

    def render(self, call: Call) -> Reply:
        headers = call.fleetdeck_headers()
        if call.events is not None:
            return Reply(200, {**headers, "Cache-Control": "no-cache"}, stream=sse(call.events))
        return Reply(200, headers, orjson.dumps(call.answer))

    def refuse(self, call: Call, error: ApiError) -> Reply:
        headers = {"Content-Type": "application/json", **error.headers, **call.refusal_headers()}
        return Reply(error.status, headers, error.envelope())


async def sse(events: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    """Canonical stream events as OpenAI's server-sent events: `[DONE]` only for a clean end."""
    try:
        async for event in events:
            if isinstance(event, dict):
                yield b"data: " + orjson.dumps(event) + b"\n\n"
            elif isinstance(event, End):
                yield SSE_DONE
            elif isinstance(event, KeepAlive):
                yield SSE_KEEP_ALIVE
            else:
                yield b"data: " + event.error.envelope() + b"\n\n"
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


def check_request(operation: str, field: str, body: Body) -> None:
    """Checks the fields the gateway itself relies on; the provider checks the rest."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise openai_api.bad_request("'model' must be a string", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise openai_api.bad_request("'stream' must be true or false", param="stream")
    if stream and operation == "embeddings":
        raise openai_api.bad_request("embeddings cannot be streamed", param="stream")
    if field not in body:
        raise openai_api.bad_request(f"'{field}' is required", param=field)
    if operation == "chat":
        _check_messages(body["messages"])
    elif not isinstance(body[field], str | list) or not body[field]:
        raise openai_api.bad_request(f"'{field}' must be a non-empty string or list", param=field)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise openai_api.bad_request(f"'{name}' must be a positive integer", param=name)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise openai_api.bad_request(f"'{name}' must be a number", param=name)
    _check_object(body, "metadata")
    _check_object(body, "stream_options")
    _check_object(body, "response_format")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise openai_api.bad_request("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise openai_api.bad_request(f"{param} must be an object", param=param)
        role = message.get("role")
        if role not in ROLES:
            raise openai_api.bad_request(
                f"{param}.role must be one of {', '.join(sorted(ROLES))}", param=f"{param}.role"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise openai_api.bad_request(
                f"{param}.content must be a string or an array", param=f"{param}.content"
            )


def _check_object(body: Body, name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise openai_api.bad_request(f"'{name}' must be an object", param=name)
