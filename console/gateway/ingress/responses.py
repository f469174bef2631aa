"""OpenAI's Responses API: `POST /v1/responses` (JSON or typed server-sent events), and the
stored responses it keeps: `GET|DELETE /v1/responses/{id}`, `GET …/{id}/input_items`.

The request becomes the canonical call (responses_request.py), its answer a `response`
object (responses_output.py) or its stream the typed events (responses_stream.py); errors
are OpenAI's envelope. With `store` (the default) the response and its input items are
kept for the key that made them (console/store/responses.py), redacted like payloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from console import guards
from console.gateway import openai_api
from console.gateway.call import Call, End, KeepAlive
from console.gateway.ingress import responses_output
from console.gateway.ingress.base import Reply
from console.gateway.ingress.openai_surface import SSE_KEEP_ALIVE
from console.gateway.ingress.responses_request import ResponsesRequest, parse_request
from console.gateway.ingress.responses_stream import ResponseEvents
from console.gateway.openai_api import ApiError
from console.gateway.services import GatewayServices
from console.gateway.wire.check import Checked
from console.gateway.wire.openai import ResponseCreateRequest
from console.providers.base import Body
from console.store.recorder import RecorderUnavailable
from console.store.trace import StoredResponse

CHECKED = Checked(ResponseCreateRequest)  # the wire model /openapi.json is made from
ORDERS = ("asc", "desc")
MAX_PAGE = 100


@dataclass(frozen=True)
class ResponsesIngress:
    path: str = "/v1/responses"
    operation: str = "chat"
    protocol: str = "responses"

    def parse(self, raw: bytes) -> ResponsesRequest:
        body = openai_api.parse_body(raw)
        CHECKED.check(body)
        return parse_request(body, len(raw))

    def render(self, call: Call) -> Reply:
        request = call.request
        assert isinstance(request, ResponsesRequest)
        headers = call.fleetdeck_headers()
        if call.events is not None:
            return Reply(200, {**headers, "Cache-Control": "no-cache"}, stream=_events(call, request))
        assert call.answer is not None
        response = responses_output.completed(request, call.trace.request_id, call.answer)
        keep(call, request, response)
        return Reply(200, headers, orjson.dumps(response))

    def refuse(self, call: Call, error: ApiError) -> Reply:
        headers = {"Content-Type": "application/json", **error.headers, **call.refusal_headers()}
        return Reply(error.status, headers, error.envelope())


RESPONSES = ResponsesIngress()


async def _events(call: Call, request: ResponsesRequest) -> AsyncIterator[bytes]:
    """The canonical events as typed Responses events; kept once complete, before the last event."""
    events = call.events
    assert events is not None
    stream = ResponseEvents(request, call.trace.request_id)
    try:
        yield stream.start()
        async for event in events:
            if isinstance(event, dict):
                rendered = stream.chunk(event)
                if rendered:
                    yield rendered
            elif isinstance(event, End):
                closing = stream.end()
                try:
                    keep(call, request, stream.response())
                except RecorderUnavailable as unrecorded:  # fail closed: no clean end unkept
                    yield stream.failed(openai_api.unrecorded(unrecorded.message))
                    return
                yield closing
            elif isinstance(event, KeepAlive):
                yield SSE_KEEP_ALIVE
            else:
                yield stream.failed(event.error)
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


# --- stored responses ---------------------------------------------------------------------------


def keep(call: Call, request: ResponsesRequest, response: Body) -> None:
    """Store the response (redacted) for its key, when the request asked for it (`store`)."""
    stored = call.services.responses
    if not request.store or stored is None:
        return
    redacted = {**response, "output": redacted_items(response["output"])}
    if isinstance(redacted.get("instructions"), str):
        redacted["instructions"] = guards.redact(redacted["instructions"])[0]
    stored.keep(
        StoredResponse(
            response_id=response["id"],
            request_id=call.trace.request_id,
            key_id=call.key.key_id if call.key else None,
            previous_response_id=request.previous_response_id,
            input_items=redacted_items(request.input_items),
            response=redacted,
        )
    )


def redacted_items(items: list[Body]) -> list[Body]:
    """Items with the PII in their text, arguments and outputs redacted."""
    return [_redacted_item(item) for item in items]


def _redacted_item(item: Body) -> Body:
    kind = item.get("type")
    if kind == "message" and isinstance(item.get("content"), list):
        return {**item, "content": [_redacted_part(part) for part in item["content"]]}
    if kind == "function_call":
        return {**item, "arguments": _redact(item.get("arguments"))}
    if kind == "function_call_output":
        output = item.get("output")
        parts = [_redacted_part(p) for p in output] if isinstance(output, list) else _redact(output)
        return {**item, "output": parts}
    return item


def _redacted_part(part: Any) -> Any:
    if not isinstance(part, dict):
        return part
    return {key: _redact(value) if key in ("text", "refusal") else value for key, value in part.items()}


def _redact(value: Any) -> Any:
    return guards.redact(value)[0] if isinstance(value, str) else value


async def retrieve(services: GatewayServices, headers: Mapping[str, str], response_id: str) -> Body:
    """`GET /v1/responses/{id}`: the stored response, if the caller's key made it."""
    return (await _find(services, headers, response_id)).response  # type: ignore[no-any-return]


async def delete(services: GatewayServices, headers: Mapping[str, str], response_id: str) -> Body:
    """`DELETE /v1/responses/{id}`."""
    stored, key_id = services.responses, _key_id(services, headers)
    if stored is None or not await asyncio.to_thread(stored.delete, response_id, key_id):
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


async def input_items(
    services: GatewayServices, headers: Mapping[str, str], response_id: str, params: Mapping[str, str]
) -> Body:
    """`GET /v1/responses/{id}/input_items`: a page of the list (limit, order, after)."""
    limit, order, after = _page(params)
    items = list((await _find(services, headers, response_id)).input_items)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise openai_api.bad_request(
                f"no input item {after!r} in response {response_id!r}", param="after"
            )
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


async def _find(services: GatewayServices, headers: Mapping[str, str], response_id: str) -> StoredResponse:
    stored, key_id = services.responses, _key_id(services, headers)
    found = None if stored is None else await asyncio.to_thread(stored.find, response_id, key_id)
    if found is None:
        raise _not_found(response_id)
    return found


def _key_id(services: GatewayServices, headers: Mapping[str, str]) -> str | None:
    """The caller's key (a 401 ApiError without a valid one); None when no key is required."""
    return services.keys.authenticate(headers).key_id if services.keys is not None else None


def _not_found(response_id: str) -> ApiError:
    return ApiError(404, f"Response with id {response_id!r} not found.", code="not_found")


def _page(params: Mapping[str, str]) -> tuple[int, str, str | None]:
    raw_limit = params.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise openai_api.bad_request(f"'limit' must be an integer from 1 to {MAX_PAGE}", param="limit")
    order = params.get("order", "desc")
    if order not in ORDERS:
        raise openai_api.bad_request("'order' must be asc or desc", param="order")
    return int(raw_limit), order, params.get("after") or None
