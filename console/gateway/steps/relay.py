"""The stream relay: a streamed call's chunks from the upstream to the client, under the
idle timeout and the call's deadline. On a route with a tool policy, the chunks from the
first tool-call delta on go through the stream's tool policy (console.gateway.steps.
stream_tools); the chunks before it, and every chunk of other routes, pass as they are.
As the last chunk passes, the relay does for the stream what the settle and keep steps
do for a JSON answer, and records the trace.

A stream that fails after its first byte ends with a `Failed` event, never with `End`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from console import guards
from console.gateway import cache as response_cache
from console.gateway import openai_api
from console.gateway.call import Call, End, Failed, StreamEvent
from console.gateway.executor import Target
from console.gateway.read_timer import ReadTimer
from console.gateway.steps.keep import cache_answer, check_schema
from console.gateway.steps.settle import called_tools, settle_cost
from console.gateway.steps.stream_tools import StreamTools
from console.providers.base import Body, ErrorType, ProviderError, Usage
from console.store.recorder import RecorderUnavailable

log = logging.getLogger("fleetdeck.gateway")


async def relay(
    call: Call, target: Target, chunks: AsyncGenerator[Body, None], first: Body
) -> AsyncIterator[StreamEvent]:
    assert call.request is not None and call.decision is not None
    wants_usage, timeouts, trace = call.request.wants_usage, call.decision.plan.timeouts, call.trace
    deadline = call.started + timeouts.total_s
    usage, compute_s, finish, deltas, answered = None, None, [], 0, None
    text: dict[int, list[str]] = {}
    policy = call.route.tools if call.route else None
    tools = StreamTools(call, policy, text, wants_usage) if policy is not None else None
    ended = False  # the upstream's stream ended cleanly: recorded before the client sees its end
    timer = ReadTimer()
    try:
        chunk: Body | None = first
        while chunk is not None:
            compute_s, usage, answered = _noted(chunk, compute_s, usage, answered)
            choices = chunk.get("choices")
            if tools is not None and (tools.active or _calls_tools(chunk)):
                deltas += _collect_text(chunk, text)
                async with aclosing(tools.take(chunk)) as policed:
                    async for event in policed:
                        yield event
                finish += _finish_reasons(chunk)  # as policed: what the client received
                deadline = call.started + timeouts.total_s + tools.waited_s
            elif choices:
                deltas += _take_choices(choices, text, finish)
                yield chunk
            elif wants_usage:
                yield chunk
            chunk = await _next_chunk(timer, chunks, timeouts.idle_s, deadline - time.perf_counter())
        trace.status, trace.http_status = "ok", 200
        check_schema(call, ["".join(text[i]) for i in sorted(text)])
        ended = True
    except (ProviderError, Exception) as exc:
        error = exc if isinstance(exc, ProviderError) else _unexpected(exc, target)
        trace.status, trace.error_type, trace.http_status = "partial", error.error_type.value, 200
        yield Failed(openai_api.from_provider_error(error, target.name))
    except (asyncio.CancelledError, GeneratorExit):
        trace.status, trace.error_type, trace.http_status = "partial", "client_disconnected", 499
        raise
    finally:
        timer.close()
        await chunks.aclose()
        if not ended:
            _close_quietly(call, target, tools, text, finish, usage, deltas, compute_s, answered)
    if not ended:
        return
    # A clean end is acknowledged only once its trace is on the spool: a stream the recorder
    # cannot keep ends with the error event instead (fail closed).
    try:
        _close(call, target, tools, text, finish, usage, deltas, compute_s, answered)
    except RecorderUnavailable as unrecorded:
        yield Failed(openai_api.unrecorded(unrecorded.message))
        return
    yield End()


def _noted(
    chunk: Body, compute_s: float | None, usage: Usage | None, answered: str | None
) -> tuple[float | None, Usage | None, str | None]:
    """What a chunk says beside its deltas: compute time (local), usage, the answering model."""
    private = chunk.pop("_fleetdeck", None)
    if private:
        compute_s = private.get("compute_s", compute_s)
    if chunk.get("usage"):
        usage = Usage.from_openai(chunk["usage"])
    if isinstance(chunk.get("model"), str):
        answered = chunk["model"]
    return compute_s, usage, answered


def _close_quietly(call: Call, *args: Any) -> None:
    """`_close` for a stream that failed or was left: its client has had its error already."""
    try:
        _close(call, *args)
    except RecorderUnavailable:
        log.error("the trace of stream %s could not be spooled", call.trace.request_id)


def _close(
    call: Call,
    target: Target,
    tools: StreamTools | None,
    text: dict[int, list[str]],
    finish: list[str],
    usage: Usage | None,
    deltas: int,
    compute_s: float | None,
    answered: str | None,
) -> None:
    """What settle and keep do for a JSON answer, then the record: as the stream ends."""
    trace = call.trace
    trace.finish_reasons = finish
    assembled = _assembled(text, tools.released if tools is not None else {})
    if tools is not None:
        tools.note()
        trace.tool_calls = called_tools(assembled)
    # Inline: a generator closed by its client cannot await in `finally`; max_tokens bounds it.
    call.note_output(*guards.redact_body({"choices": assembled}))
    if usage is None:  # cut before the usage chunk: price what was relayed
        usage = Usage(output_tokens=deltas)
        settle_cost(call, target, usage, compute_s or call.elapsed_s(), answered, estimated=True)
    else:
        settle_cost(call, target, usage, compute_s, answered)
        if trace.status == "ok" and not (tools is not None and tools.active):  # tool calls: never cached
            cache_answer(call, response_cache.assembled_answer(text, finish, answered, usage))
    call.finish()


def _collect_text(chunk: Body, text: dict[int, list[str]]) -> int:
    """Append a stream chunk's content deltas per choice; returns how many it carried."""
    carried = 0
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            text.setdefault(int(choice.get("index") or 0), []).append(str(content))
            carried += 1
    return carried


def _take_choices(choices: list[Body], text: dict[int, list[str]], finish: list[str]) -> int:
    """`_collect_text` and `_finish_reasons` in one pass, for a chunk passing as it is."""
    carried = 0
    for choice in choices:
        delta = choice.get("delta")
        content = delta.get("content") if delta else None
        if content:
            text.setdefault(int(choice.get("index") or 0), []).append(str(content))
            carried += 1
        reason = choice.get("finish_reason")
        if reason:
            finish.append(str(reason))
    return carried


def _finish_reasons(chunk: Body) -> list[str]:
    return [str(c["finish_reason"]) for c in chunk.get("choices") or () if c.get("finish_reason")]


def _calls_tools(chunk: Body) -> bool:
    """Whether a chunk carries a tool-call delta (a plain loop: ~3× cheaper than any())."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta and delta.get("tool_calls"):  # not `"tool_calls": null`, which some servers send with text
            return True
    return False


def _assembled(text: dict[int, list[str]], released: dict[int, list[Body]]) -> list[Body]:
    """The choices as the client received them, for the stored response."""
    choices = []
    for index in [*text, *(i for i in released if i not in text)]:
        message: Body = {"content": "".join(text.get(index, ()))}
        if released.get(index):
            message["tool_calls"] = released[index]
        choices.append({"index": index, "message": message})
    return choices


async def _next_chunk(
    timer: ReadTimer, chunks: AsyncGenerator[Body, None], idle_s: float, left_s: float
) -> Body | None:
    """The next chunk within the idle timeout and the time the call has left."""
    try:
        return await timer.within(anext(chunks), max(min(idle_s, left_s), 0))
    except StopAsyncIteration:
        return None
    except TimeoutError:
        if idle_s <= left_s:
            raise ProviderError(ErrorType.timeout, f"the stream went quiet for {idle_s:.1f}s") from None
        raise ProviderError(ErrorType.timeout, "the request's deadline passed mid-stream") from None


def _unexpected(exc: Exception, target: Target) -> ProviderError:
    log.exception("provider %s failed unexpectedly", target.name, exc_info=exc)
    return ProviderError(ErrorType.bad_response, f"{type(exc).__name__} in the provider")
