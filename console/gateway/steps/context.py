"""Fleetdeck's own context of a call (workflow, intent, task, session, step, tier, prompt,
the handoff it consumes, trace ids), from `X-Fleetdeck-*` headers or the request's `metadata`; headers win.

The call's OpenTelemetry span joins a client's W3C `traceparent` (console.tracecontext);
its trace id is the trace's `trace_id` unless X-Fleetdeck-Trace names one, and every
upstream request of the call carries a `traceparent` naming Fleetdeck's span.

A session may also come from the conversation id a client already sends in `metadata`
(`session_id`, `conversation_id`, `gen_ai.conversation.id`): those stay in the metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console import tracecontext
from console.gateway import openai_api
from console.gateway.call import Call
from console.providers.base import UPSTREAM_HEADERS, Body

CONTEXT_HEADERS = {
    "x-fleetdeck-workflow": "workflow",
    "x-fleetdeck-intent": "intent",
    "x-fleetdeck-task": "task",
    "x-fleetdeck-session": "session",
    "x-fleetdeck-step": "step",
    "x-fleetdeck-tier": "tier",
    "x-fleetdeck-prompt": "prompt",
    "x-fleetdeck-handoff": "handoff",
}
CONTEXT_KEYS = frozenset(CONTEXT_HEADERS.values())
CONVERSATION_KEYS = ("session_id", "conversation_id", "gen_ai.conversation.id")
MAX_SESSION_CHARS = 256


async def read_context(call: Call) -> None:
    read(call, call.body)


def read(call: Call, body: Body) -> None:
    """Fill the trace's context; the context keys leave `metadata` (providers never see them)."""
    call.handoff_submitted = _submitted_handoff(body)  # before the context takes `handoff` as an id
    context = _context(call.headers, body)
    trace = call.trace
    trace.workflow_id = context.get("workflow")
    trace.intent = context.get("intent")
    trace.task_id = context.get("task")
    trace.session_id = _session(context.get("session"))
    trace.tier = context.get("tier")
    call.handoff = context.get("handoff")
    _trace_ids(call)
    if "step" in context:
        trace.step = _step(context["step"])
    if "prompt" in context:
        name, _, version = context["prompt"].partition("@")
        trace.prompt_name, trace.prompt_version = name, version or None


def _trace_ids(call: Call) -> None:
    trace, headers = call.trace, call.headers
    client = tracecontext.client_parent(headers)
    fleetdeck_trace = headers.get("x-fleetdeck-trace")
    client_trace = f"{client.trace_id:032x}" if client is not None else None
    trace.trace_id = fleetdeck_trace or client_trace or trace.request_id
    trace.parent_id = headers.get("x-fleetdeck-parent")
    call.span = tracecontext.call_span(trace.request_id, client, trace.trace_id, trace.parent_id)
    UPSTREAM_HEADERS.set({tracecontext.TRACEPARENT: call.span.traceparent()})


def _submitted_handoff(body: Body) -> dict[str, Any] | None:
    """`metadata.handoff` as an object: a handoff submitted with the call that consumes it."""
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("handoff"), dict):
        return None
    submitted: dict[str, Any] = metadata.pop("handoff")
    if not metadata:
        del body["metadata"]
    return submitted


def _context(headers: Mapping[str, str], body: Body) -> dict[str, str]:
    context = {key: headers[header] for header, key in CONTEXT_HEADERS.items() if header in headers}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        for key in CONTEXT_KEYS & metadata.keys():
            context.setdefault(key, str(metadata.pop(key)))
        conversation = next(
            (metadata[k] for k in CONVERSATION_KEYS if isinstance(metadata.get(k), str)), None
        )
        if conversation:
            context.setdefault("session", conversation)
        if not metadata:
            del body["metadata"]
    return context


def _session(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_SESSION_CHARS:
        raise openai_api.bad_request(
            f"X-Fleetdeck-Session is {len(value)} characters; at most {MAX_SESSION_CHARS}", param="session"
        )
    return value.strip()


def _step(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise openai_api.bad_request(
            f"X-Fleetdeck-Step must be an integer, not {value!r}", param="step"
        ) from None
