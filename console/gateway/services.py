"""What the steps of a call use: the Engine's parts, built once and shared by every call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from console.gateway.approvals import ApprovalQueue
from console.gateway.budget import Ledger, LocalLedger, TaskSteps
from console.gateway.cache import ResponseCache
from console.gateway.executor import Executor
from console.gateway.handoffs import Handoffs
from console.gateway.injection_guard import InjectionGuard
from console.gateway.keys import KeyRegistry
from console.gateway.limits import Limiter, RateLimiter
from console.gateway.oversight import FallbackNotes, RouteStops
from console.gateway.pricing import PriceBook
from console.gateway.prompts import PromptRegistry
from console.gateway.router import Router
from console.policy import Policy
from console.providers.base import Body, Provider
from console.store.recorder import Recorder
from console.store.responses import StoredResponses
from console.store.trace import Trace
from console.tracecontext import CallSpan

# Told of every finished call with its stored (redacted) request and response: the judge.
AfterTrace = Callable[[Trace, Body | None, Body | None], None]
# Told the same, with the call's span: the OTLP export (console.otel). Must return at once.
ExportTrace = Callable[[Trace, CallSpan | None, Body | None, Body | None], None]


@dataclass
class GatewayServices:
    router: Router
    executor: Executor
    providers: Mapping[str, Provider]
    prices: PriceBook
    recorder: Recorder
    policy: Policy
    keys: KeyRegistry | None  # None: no key needed (a trusted single-user box)
    ledger: Ledger = field(default_factory=LocalLedger)
    limiter: Limiter = field(default_factory=RateLimiter)
    steps: TaskSteps = field(default_factory=TaskSteps)
    stops: RouteStops = field(default_factory=RouteStops)
    fallbacks: FallbackNotes | None = None
    approvals: ApprovalQueue | None = None
    after_trace: AfterTrace | None = None
    export_trace: ExportTrace | None = None
    prompts: PromptRegistry | None = None
    cache: ResponseCache | None = None
    responses: StoredResponses | None = None  # what the Responses API stores (`store`)
    refuse_uncapped_in_outage: bool = False  # cluster_uncapped = refuse: no call while the ledger is away
    stream_keep_alive_s: float = 15.0  # how often a stream waiting for an approval says it is alive
    injection: InjectionGuard | None = None  # None: the injection patterns score alone
    handoffs: Handoffs | None = None  # the policy's handoff contracts, when it has any
