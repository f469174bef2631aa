"""One call's state, passed through the steps of console.gateway.pipeline in order.

The request is held in the canonical form every step and provider reads: an operation
(chat | text_completion | embeddings) and the request's fields in one vocabulary,
Chat Completions' (`messages` with roles and tool calls, `prompt`, `input`, `tools`,
`tool_choice`, `response_format`, sampling parameters such as `temperature` and
`max_tokens`, `metadata`, `stream`). An ingress adapter translates its wire protocol
into that form and renders the canonical answer (a body, or a stream of events) back;
no step sees a wire format.

The call owns its trace from the first byte and records it once, in `finish()`: for
streams when the last event is relayed, for everything else when the reply is built.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console import tracecontext
from console.clock import utc_now
from console.gateway import cache as response_cache
from console.gateway import escalation
from console.gateway.budget import Reservation
from console.gateway.classifier import Classification
from console.gateway.executor import Attempt, Served, Target
from console.gateway.keys import VirtualKey
from console.gateway.limits import Held
from console.gateway.openai_api import ApiError
from console.gateway.router import Decision
from console.gateway.services import GatewayServices
from console.policy import Route
from console.providers.base import NATIVE, Body, Native, Provider
from console.store.audit import AuditEvent
from console.store.trace import Payload, Trace
from console.tracecontext import CallSpan

Disconnected = Callable[[], Awaitable[None]]
GUARD_INLINE_BYTES = 32_768  # longer bodies are scanned on a worker thread, off the loop


@dataclass(slots=True)
class CanonicalRequest:
    """A request in the canonical form (see the module doc), with the reads the steps share."""

    operation: str
    body: Body
    size: int = 0  # bytes on the wire: a long request is scanned on a worker thread
    native: Native | None = None  # the request as the client sent it, for a provider speaking its protocol

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def wants_usage(self) -> bool:
        """A streaming client that asked for the usage chunk."""
        return bool((self.body.get("stream_options") or {}).get("include_usage"))

    def max_tokens(self) -> int | None:
        for name in ("max_completion_tokens", "max_tokens"):
            value = self.body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    async def resume(self, call: Call) -> None:
        """What the request still needs from its caller once authenticated: nothing, unless
        its protocol continues a conversation stored for the caller's key (the Responses
        API's `previous_response_id`); its ingress adapter returns a subclass that does that."""


@dataclass(frozen=True, slots=True)
class End:
    """The stream finished cleanly."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The stream broke after its first byte: the client must learn it did not end cleanly."""

    error: ApiError


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Nothing to send yet (e.g. a tool call waits for approval): keep the client's stream open."""


# A streamed delta is a chat.completion.chunk body as it is (no wrapper: streams are hot).
# A chunk may carry the upstream's own events under providers.base.NATIVE: a step that
# rewrites a chunk drops them, and the ingress translates the chunk instead.
StreamEvent = Body | End | Failed | KeepAlive


def provider_protocols(provider: Provider) -> frozenset[str]:
    """The ingress protocols a provider takes as they are (`Provider.native_protocols`)."""
    return frozenset(getattr(provider, "native_protocols", ()))


class ClientDisconnected(Exception):
    pass


@dataclass
class Call:
    services: GatewayServices
    operation: str
    headers: Mapping[str, str] = field(default_factory=dict)
    protocol: str | None = None  # the wire protocol it arrived in
    disconnected: Disconnected | None = None
    trace: Trace = field(init=False)
    started: float = field(default_factory=time.perf_counter)
    request: CanonicalRequest | None = None
    attempts: list[Attempt] = field(default_factory=list)
    key: VirtualKey | None = None
    decision: Decision | None = None
    route: Route | None = None
    classification: Classification | None = None  # intent and risk, when the request named none
    routing: dict[str, Any] = field(default_factory=dict)  # why this model: guard_results.routing
    output_schema: dict[str, Any] | None = None  # what every answer must match, when anything
    handoff: str | None = None  # the handoff this call consumes (X-Fleetdeck-Handoff), checked before routing
    handoff_submitted: dict[str, Any] | None = None  # a handoff submitted in its metadata, to consume
    stored_request: Body | None = None  # as stored and as remote providers see it (redacted)
    pii_mode: str = "redact"
    lookup: response_cache.Lookup | None = None
    reservation: Reservation | None = None
    lease: Held | None = None  # its share of the rate limits, given back when it ends
    served: Served[Body] | None = None  # the upstream's answer (not for streams)
    escalated: escalation.Escalated | None = None  # the small tier's answer that failed a check
    answer: Body | None = None  # the reply, once there is one
    events: AsyncIterator[StreamEvent] | None = None  # the streamed reply, once it is open
    stored_response: Body | None = None  # as stored (redacted)
    native_answer: Native | None = None  # the upstream's own answer, when it spoke the ingress's protocol
    target: Target | None = None  # who answered
    reply_headers: dict[str, str] = field(default_factory=dict)
    streaming: bool = False  # the relay records the trace when the stream ends
    span: CallSpan | None = None  # its OpenTelemetry span (W3C trace context), once its context is read
    recorded: bool = False

    def __post_init__(self) -> None:
        # "error" until a success says otherwise, so an unforeseen exit is never traced as ok.
        self.trace = Trace(
            operation=self.operation,
            protocol=self.protocol,
            ts_start=utc_now(),
            status="error",
            stream=False,
            cache="miss",
        )

    @property
    def body(self) -> Body:
        assert self.request is not None, "the ingress adapter parses the request first"
        return self.request.body

    @property
    def answered(self) -> bool:
        return self.answer is not None or self.events is not None

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def seconds_left(self) -> float:
        assert self.decision is not None
        return self.decision.plan.timeouts.total_s - self.elapsed_s()

    # -- what the trace says --------------------------------------------------------------

    def fail(self, error_type: str, status: int) -> None:
        self.trace.status, self.trace.error_type, self.trace.http_status = "error", error_type, status

    def blocked(self, reason: str) -> None:
        self.trace.status, self.trace.reason_code = "blocked", reason

    def refused(self, error: ApiError) -> ApiError:
        """Trace a refusal; blocked and over-budget calls keep their status."""
        if self.trace.status in ("blocked", "over_budget", "rate_limited"):
            self.trace.error_type, self.trace.http_status = error.error_type, error.status
        else:
            self.fail(error.error_type, error.status)
        return error

    def note_decision(self, decision: Decision, requested_model: str | None) -> None:
        self.decision, trace = decision, self.trace
        trace.request_model = requested_model
        trace.route = decision.route
        trace.intent = trace.intent or decision.route
        trace.tier = trace.tier or decision.tier
        trace.reason_code = decision.reason_code

    def note_served(self, served: Served[Any]) -> None:
        trace, self.target = self.trace, served.target
        trace.provider = served.target.provider
        trace.response_model = served.target.name
        if served.fell_back:
            trace.reason_code = "provider-outage-fallback"
            failed = next((a.target.name for a in self.attempts if a.status != "ok"), "?")
            if self.services.fallbacks is not None:
                self.services.fallbacks.fell_back(trace.route, failed, served.target.name, trace.request_id)

    def note_output(self, redacted: Body, found: dict[str, int]) -> None:
        """Keep the redacted response, with output PII counted on the trace."""
        self.stored_response = redacted
        if found and isinstance(self.trace.guard_results, dict):
            self.trace.guard_results["output_pii"] = found

    def audit(self, action: str, payload: dict[str, Any]) -> None:
        """An audit entry about this call, by its key."""
        key = self.key
        self.services.recorder.record_audit(
            AuditEvent(
                actor=key.name if key else "anonymous",
                actor_kind="key" if key else "system",
                action=action,
                subject=self.trace.request_id,
                payload={**payload, "workflow_id": self.trace.workflow_id},
            )
        )

    # -- what providers are sent --------------------------------------------------------

    def outbound(self, provider: Provider, body: Body) -> Body:
        """The redacted request for a remote provider when the route redacts, else `body`; with
        the client's own request beside it when the provider speaks the client's protocol and
        no step has rewritten what the request says (see providers.base.Native)."""
        if provider.kind != "local" and self.pii_mode == "redact" and self.stored_request is not None:
            kept: Body = {k: body[k] for k in ("max_tokens", "stream_options") if k in body}
            body = {**self.stored_request, **kept}
        native = self.request.native if self.request is not None else None
        if (
            native is not None
            and native.protocol in provider_protocols(provider)
            and native.fits_request(body)
        ):
            return {**body, NATIVE: native.with_headers(self.headers)}
        return body

    def reaches_remote(self) -> bool:
        assert self.decision is not None
        providers = self.services.providers
        return any(providers[t.provider].kind != "local" for t in self.decision.plan.targets)

    def fleetdeck_headers(self) -> dict[str, str]:
        """X-Fleetdeck-* headers of an answer: which request, route, model and why."""
        headers = self.refusal_headers()
        if self.target is not None:
            headers["X-Fleetdeck-Model"] = self.target.name
        return {**headers, **self.reply_headers}

    def refusal_headers(self) -> dict[str, str]:
        """X-Fleetdeck-* headers of a refusal: which request, route and why."""
        trace = self.trace
        headers = {"X-Fleetdeck-Request-Id": trace.request_id}
        if trace.route:
            headers["X-Fleetdeck-Route"] = trace.route
        if trace.reason_code:
            headers["X-Fleetdeck-Reason"] = trace.reason_code
        return headers

    # -- record (the last step) -----------------------------------------------------------

    def finish(self) -> None:
        """Record the trace (and its payload) once; release what was reserved and not settled."""
        if self.recorded:
            return
        self.recorded = True
        services, trace = self.services, self.trace
        if self.reservation is not None:  # a call that failed before it was priced
            services.ledger.settle(self.reservation, 0.0)
        if self.lease is not None:
            self.lease.release((trace.input_tokens or 0) + (trace.output_tokens or 0))
        trace.ts_end = utc_now()
        trace.latency_ms = self.elapsed_s() * 1000
        trace.attempts = sum(1 for a in self.attempts if a.status != "skipped")
        trace.attempt_log = [a.as_json() for a in self.attempts]
        services.router.observe(trace.route, self.attempts)
        if self.routing:
            found = trace.guard_results if isinstance(trace.guard_results, dict) else {}
            trace.guard_results = {**found, "routing": self.routing}
        if self.stored_request is None:
            services.recorder.record(trace)
        else:
            trace.payload_ref = trace.request_id
            payload = Payload(
                payload_ref=trace.request_id,
                request_id=trace.request_id,
                request=self.stored_request,
                response=self.stored_response,
            )
            services.recorder.record(trace, payload)
        if services.after_trace is not None:
            services.after_trace(trace, self.stored_request, self.stored_response)
        if services.export_trace is not None:
            services.export_trace(trace, self.otel_span(), self.stored_request, self.stored_response)

    def otel_span(self) -> CallSpan:
        """The call's span; one from its headers if it ended before its context was read (a 401)."""
        if self.span is None:
            trace, client = self.trace, tracecontext.client_parent(self.headers)
            self.span = tracecontext.call_span(trace.request_id, client, trace.trace_id, trace.parent_id)
        return self.span
