"""Anthropic's Messages API: `POST /v1/messages` (JSON or Anthropic's event stream) and
`POST /v1/messages/count_tokens`, over the same canonical call as every other protocol.

The request is translated in `messages_request`, the answer, the stream and the errors
in `messages_reply`. The virtual key comes as `x-api-key` or `Authorization: Bearer`
(console.gateway.keys); `anthropic-version` and `anthropic-beta` are accepted and not
needed (an Anthropic upstream gets Fleetdeck's own `anthropic-version`).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from console.gateway.call import Call, CanonicalRequest
from console.gateway.ingress import messages_reply, messages_request
from console.gateway.ingress.base import Reply
from console.gateway.openai_api import ApiError


@dataclass(frozen=True)
class MessagesIngress:
    path: str = "/v1/messages"
    operation: str = "chat"
    protocol: str = "messages"

    def parse(self, raw: bytes) -> CanonicalRequest:
        return messages_request.parse(raw, self.operation)

    def render(self, call: Call) -> Reply:
        headers = call.fleetdeck_headers()
        if call.events is not None:
            stream = messages_reply.stream(call, call.events)
            return Reply(200, {**headers, "Cache-Control": "no-cache"}, stream=stream)
        return Reply(200, headers, orjson.dumps(messages_reply.message(call)))

    def refuse(self, call: Call, error: ApiError) -> Reply:
        headers = {"Content-Type": "application/json", **error.headers, **call.refusal_headers()}
        body = messages_reply.error_body(error, call.trace.request_id)
        return Reply(error.status, headers, orjson.dumps(body))


@dataclass(frozen=True)
class CountTokensIngress(MessagesIngress):
    """`{"input_tokens": N}` for a Messages request, counted for the model its route would use:
    the local model's own tokenizer, an Anthropic upstream's count_tokens, else an estimate."""

    path: str = "/v1/messages/count_tokens"
    operation: str = "count_tokens"

    def parse(self, raw: bytes) -> CanonicalRequest:
        return messages_request.parse(raw, self.operation, count=True)

    def render(self, call: Call) -> Reply:
        assert call.answer is not None
        return Reply(200, call.fleetdeck_headers(), orjson.dumps(call.answer))


MESSAGES = MessagesIngress()
COUNT_TOKENS = CountTokensIngress()
