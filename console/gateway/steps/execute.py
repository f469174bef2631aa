"""Step 7: the attempts under one deadline (console.gateway.executor): retries, breakers and
fallback before the first byte; a streamed call is handed to the relay once its first
chunk is in (console.gateway.steps.relay)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable

from console.gateway import openai_api
from console.gateway.call import Call, ClientDisconnected
from console.gateway.executor import Plan, Served
from console.gateway.steps.relay import relay
from console.providers.base import Body, ErrorType, Provider, ProviderError

Opened = tuple[AsyncGenerator[Body, None], Body]  # the upstream's chunks, and the first of them
METHODS = {"chat": "chat", "text_completion": "completion", "embeddings": "embeddings"}


async def execute(call: Call) -> None:
    assert call.request is not None and call.decision is not None
    if call.request.stream:
        await _open_stream(call)
    else:
        call.served = await unless_disconnected(call, run_plan(call, call.decision.plan))


async def run_plan(call: Call, plan: Plan) -> Served[Body]:
    """One answer from the plan's targets, with every attempt in the call's log."""
    method = METHODS[call.operation]
    body = call.body

    async def attempt(provider: Provider, model: str, seconds_left: float) -> Body:
        result: Body = await getattr(provider, method)(
            model, {**call.outbound(provider, body), "model": model}
        )
        if not isinstance(result, dict):
            raise ProviderError(ErrorType.bad_response, f"{provider.name} answered a {type(result).__name__}")
        return result

    return await call.services.executor.run(plan, call.attempts, attempt)


async def _open_stream(call: Call) -> None:
    if call.operation != "chat":
        raise openai_api.bad_request("only chat completions can be streamed", param="stream")
    assert call.request is not None and call.decision is not None
    call.trace.stream = True
    body = call.body
    upstream_body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
    timeouts = call.decision.plan.timeouts

    async def first_chunk(provider: Provider, model: str, seconds_left: float) -> Opened:
        chunks = provider.chat_stream(model, {**call.outbound(provider, upstream_body), "model": model})
        try:
            async with asyncio.timeout(min(seconds_left, timeouts.first_token_s)):
                return chunks, await anext(chunks)
        except StopAsyncIteration:
            raise ProviderError(ErrorType.bad_response, "the stream ended before its first chunk") from None
        except BaseException:
            await chunks.aclose()
            raise

    served = await call.services.executor.run(call.decision.plan, call.attempts, first_chunk)
    call.trace.ttft_ms = call.elapsed_s() * 1000
    call.note_served(served)
    call.streaming = True
    chunks, first = served.value
    call.events = relay(call, served.target, chunks, first)


async def unless_disconnected(call: Call, work: Awaitable[Served[Body]]) -> Served[Body]:
    """Await `work`, cancelling it (and so the upstream call) if the client goes away."""
    if call.disconnected is None:
        return await work
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(call.disconnected())
    watcher.add_done_callback(lambda gone: gone.cancelled() or task.cancel())  # the client went away
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if watcher.cancelled() or not watcher.done() or (current is not None and current.cancelling()):
            raise  # this call was cancelled, not its client gone
        raise ClientDisconnected from None
    finally:
        watcher.cancel()
