"""The OpenAI surface's shared shapes: JSON bodies, server-sent events, the error envelope.

Chat Completions, Completions and Embeddings differ only in their request's model (the
fields they require, whether they stream); their modules say that and reuse this. The
model checks what the gateway itself relies on; the provider checks the rest.
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
from console.gateway.wire.check import Checked

SSE_DONE = b"data: [DONE]\n\n"
SSE_KEEP_ALIVE = b": keep-alive\n\n"  # a comment: clients ignore it, proxies see traffic


@dataclass(frozen=True)
class OpenAIIngress:
    path: str
    operation: str
    protocol: str
    wire: Checked[Any]  # the request's model (console/gateway/wire/openai.py): the check and the schema

    def parse(self, raw: bytes) -> CanonicalRequest:
        body = openai_api.parse_body(raw)
        self.wire.check(body)
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
