"""Step 9: keep the answer: the output guards (schema validity, output PII), the redacted
response for the payload store, and the answer in the cache when it may be cached."""

from __future__ import annotations

import asyncio

import orjson

from console import guards
from console.gateway.call import GUARD_INLINE_BYTES, Call
from console.guards import schema as schema_guard
from console.providers.base import NATIVE, Body

PRIVATE = frozenset({"_fleetdeck", NATIVE})


async def keep(call: Call) -> None:
    answer = call.answer
    assert answer is not None
    await keep_stored_response(call, answer)
    choices = answer.get("choices") or []
    check_schema(call, [_answer_text(c) for c in choices])
    call.trace.status, call.trace.http_status = "ok", 200
    cache_answer(call, answer)


async def keep_stored_response(call: Call, body: Body) -> None:
    """The response as stored, redacted; a long one is scanned on a worker thread."""
    stored = _storable(body)
    if len(orjson.dumps(stored)) > GUARD_INLINE_BYTES:
        call.note_output(*await asyncio.to_thread(guards.redact_body, stored))
    else:
        call.note_output(*guards.redact_body(stored))


def check_schema(call: Call, answers: list[str | None]) -> None:
    """Schema validity of the answers, on the raw (unredacted) text."""
    if call.output_schema is None:
        return
    verdict = schema_guard.check_answers(answers, call.output_schema)
    call.trace.schema_valid = verdict.valid
    if isinstance(call.trace.guard_results, dict):
        call.trace.guard_results["output_schema"] = verdict.as_json()


def cache_answer(call: Call, body: Body) -> None:
    """Cache the answer, unless the tool policy judged its calls: a later identical request
    must be judged (and a human asked) again, not answered with this verdict."""
    judged = isinstance(call.trace.guard_results, dict) and call.trace.guard_results.get("tools")
    if call.lookup is not None and call.services.cache is not None and not judged:
        call.services.cache.store(call.lookup, body, call.trace)


def _answer_text(choice: Body) -> str | None:
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text if isinstance(text, str) else None


def _storable(body: Body) -> Body:
    """What a payload keeps of a response: embedding vectors are counted, not stored."""
    body = {key: value for key, value in body.items() if key not in PRIVATE}  # the gateway's own notes
    data = body.get("data")
    if body.get("object") != "list" or not isinstance(data, list):
        return body
    vectors = [
        {"index": d.get("index"), "dimensions": len(d.get("embedding") or ())}
        for d in data
        if isinstance(d, dict)
    ]
    return {**body, "data": vectors}
