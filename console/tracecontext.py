"""W3C Trace Context for one call: which OpenTelemetry trace its span joins, its span id, its parent.

A client's `traceparent` header makes Fleetdeck's span a child of the client's span (same
trace id, the client's span id as parent, the client's sampled flag). Without one, the
ids come from Fleetdeck's own: the trace id from the call's `trace_id` (X-Fleetdeck-Trace,
else its request id) and the parent from X-Fleetdeck-Parent, so calls Fleetdeck groups
(a judge's call under the call it judges) are one OpenTelemetry trace too. The span id is
derived from the request id, so the span the upstream is told of (`traceparent` on the
outbound request) is the span exported later from the recorded trace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace as otel_trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class CallSpan:
    trace_id: str  # 32 lower-case hex digits
    span_id: str  # 16 lower-case hex digits: Fleetdeck's span for this call
    parent_span_id: str | None = None
    sampled: bool = True
    remote_parent: bool = False  # the parent is the client's span (from its traceparent)

    def traceparent(self) -> str:
        """The `traceparent` naming this call's span, for the upstream requests it makes."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def client_parent(headers: Mapping[str, str]) -> otel_trace.SpanContext | None:
    """The client's span from a valid `traceparent` header, else None."""
    value = headers.get(TRACEPARENT)
    if not value:
        return None
    found = otel_trace.get_current_span(_PROPAGATOR.extract({TRACEPARENT: value})).get_span_context()
    return found if found.is_valid else None


def call_span(
    request_id: str,
    client: otel_trace.SpanContext | None,
    fleetdeck_trace: str | None,
    fleetdeck_parent: str | None,
) -> CallSpan:
    span_id = span_id_of(request_id)
    if client is not None:
        return CallSpan(
            trace_id=f"{client.trace_id:032x}",
            span_id=span_id,
            parent_span_id=f"{client.span_id:016x}",
            sampled=client.trace_flags.sampled,
            remote_parent=True,
        )
    return CallSpan(
        trace_id=trace_id_of(fleetdeck_trace or request_id),
        span_id=span_id,
        parent_span_id=span_id_of(fleetdeck_parent) if fleetdeck_parent else None,
    )


def trace_id_of(fleetdeck_trace: str) -> str:
    """A Fleetdeck trace id as an OpenTelemetry one: itself when it is one already."""
    if len(fleetdeck_trace) == 32 and _is_hex(fleetdeck_trace) and fleetdeck_trace.strip("0"):
        return fleetdeck_trace.lower()
    return hashlib.sha256(b"trace:" + fleetdeck_trace.encode()).hexdigest()[:32]


def span_id_of(request_id: str) -> str:
    return hashlib.sha256(b"span:" + request_id.encode()).hexdigest()[:16]


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
