"""Step 5: the response cache (console.gateway.cache): an exact, then a semantic match
answers the call at no cost; a miss is remembered so the keep step can store the answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from console.gateway import cache as response_cache
from console.gateway.call import Call, End, StreamEvent
from console.gateway.steps.keep import keep_stored_response
from console.providers.base import Body


async def look_up_cache(call: Call) -> None:
    cache, route, decision = call.services.cache, call.route, call.decision
    if cache is None or route is None or call.operation != "chat":
        return
    assert decision is not None and call.request is not None
    target = decision.plan.targets[0].name
    call.lookup = await cache.lookup(route, target, call.body, call.headers, call.trace.environment)
    if call.lookup is None:
        return
    response_cache.note_lookup(call.trace, call.lookup)
    if not call.lookup.serves or call.lookup.entry is None:
        return
    answer = response_cache.replay_body(call.lookup.entry, call.trace.request_id)
    await keep_stored_response(call, answer)
    call.reply_headers["X-Fleetdeck-Cache"] = call.lookup.kind
    if not call.request.stream:
        call.answer = answer
        return
    call.trace.stream, call.trace.ttft_ms = True, call.elapsed_s() * 1000
    call.events = _replayed(response_cache.replay_stream(answer, call.request.wants_usage))


async def _replayed(chunks: list[Body]) -> AsyncIterator[StreamEvent]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)
    yield End()
