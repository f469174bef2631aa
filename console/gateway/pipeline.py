"""One request through the gateway: parse, route, execute, settle, record.

Every request yields exactly one trace, whatever happens to it: `_Call` owns the
trace from the first byte of the request and records it once, when the response
(or, for streams, the last event) is done. Guards and cache (DESIGN.md steps 2–3)
hook in here as they land.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from console import guards
from console.clock import utc_now
from console.gateway import cache as response_cache
from console.gateway import escalation, openai_api
from console.gateway.approvals import ApprovalQueue, HeldCall, new_approval_id
from console.gateway.budget import Cap, Ledger, Refusal, Reservation, TaskSteps
from console.gateway.classifier import Classification
from console.gateway.executor import Attempt, ExecutionFailed, Executor, Plan, Served, Target
from console.gateway.keys import KeyRegistry, VirtualKey
from console.gateway.openai_api import ApiError
from console.gateway.oversight import FallbackNotes, RouteStops
from console.gateway.pricing import PriceBook
from console.gateway.prompts import PromptError, PromptRegistry
from console.gateway.router import Decision, Router
from console.guards import schema as schema_guard
from console.policy import DEFAULT_MAX_TOKENS, Policy, Route, ToolPolicy
from console.providers.base import Body, ErrorType, Provider, ProviderError, Usage
from console.store.audit import AuditEvent
from console.store.recorder import Recorder
from console.store.trace import Payload, Trace

CONTEXT_HEADERS = {
    "x-fleetdeck-workflow": "workflow",
    "x-fleetdeck-intent": "intent",
    "x-fleetdeck-task": "task",
    "x-fleetdeck-step": "step",
    "x-fleetdeck-tier": "tier",
    "x-fleetdeck-prompt": "prompt",
}
CONTEXT_KEYS = frozenset(CONTEXT_HEADERS.values())
SSE_DONE = b"data: [DONE]\n\n"
GUARD_INLINE_BYTES = 32_768  # larger requests are scanned on a worker thread
log = logging.getLogger("fleetdeck.gateway")

Disconnected = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class ClientDisconnected(Exception):
    pass


@dataclass
class Gateway:
    """What the pipeline needs from the Engine."""

    router: Router
    executor: Executor
    providers: Mapping[str, Provider]
    prices: PriceBook
    recorder: Recorder
    policy: Policy
    keys: KeyRegistry | None  # None: no key needed (a trusted single-user box)
    ledger: Ledger = field(default_factory=Ledger)
    steps: TaskSteps = field(default_factory=TaskSteps)
    stops: RouteStops = field(default_factory=RouteStops)
    fallbacks: FallbackNotes | None = None
    approvals: ApprovalQueue | None = None
    # Told of every finished call with its stored (redacted) request and response: the judge.
    after_trace: Callable[[Trace, Body | None, Body | None], None] | None = None
    prompts: PromptRegistry | None = None
    cache: response_cache.ResponseCache | None = None

    async def handle(
        self, operation: str, raw: bytes, headers: Mapping[str, str], disconnected: Disconnected
    ) -> Reply:
        call = _Call(self, operation)
        try:
            return await call.run(raw, headers, disconnected)
        finally:
            if not call.streaming:
                call.finish()

    def record_request(
        self,
        operation: str,
        headers: Mapping[str, str],
        error: ApiError | None = None,
        task_id: str | None = None,
        workflow_id: str | None = None,
    ) -> dict[str, str]:
        """The one trace of a request that calls no model (model list, outcome, unknown path)."""
        call = _Call(self, operation)
        with contextlib.suppress(ApiError):  # a bad context header must not hide the request
            call._read_context(headers, {})
        trace = call.trace
        if self.keys is not None and (error is None or error.status != 401):
            with contextlib.suppress(ApiError):
                call._authenticate(headers)
        trace.task_id = task_id or trace.task_id
        trace.workflow_id = workflow_id or trace.workflow_id
        if error is None:
            trace.status, trace.http_status = "ok", 200
        else:
            call._fail(error.error_type, error.status)
        call.finish()
        return call._headers(None)

    def authenticate(self, headers: Mapping[str, str]) -> None:
        """Raise the 401 ApiError when keys are required and the request has no valid one."""
        if self.keys is not None:
            self.keys.authenticate(headers)


@dataclass
class _Call:
    gateway: Gateway
    operation: str
    trace: Trace = field(init=False)
    attempts: list[Attempt] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    streaming: bool = False
    recorded: bool = False
    key: VirtualKey | None = None
    reservation: Reservation | None = None
    request: Body | None = None  # the request as stored and as remote providers see it (redacted)
    pii_mode: str = "redact"
    response: Body | None = None  # the response as stored (redacted)
    output_schema: dict[str, Any] | None = None  # what every answer must match, when anything
    classification: Classification | None = None  # intent and risk, when the request named none
    routing: dict[str, Any] = field(default_factory=dict)  # why this model: guard_results.routing
    escalated: escalation.Escalated | None = None  # the small tier's answer that failed a check
    lookup: response_cache.Lookup | None = None

    def __post_init__(self) -> None:
        # "error" until a success says otherwise, so an unforeseen exit is never traced as ok.
        self.trace = Trace(
            operation=self.operation, ts_start=utc_now(), status="error", stream=False, cache="miss"
        )

    async def run(self, raw: bytes, headers: Mapping[str, str], disconnected: Disconnected) -> Reply:
        trace = self.trace
        trace.request_hash = hashlib.sha256(raw).hexdigest()
        try:
            self._authenticate(headers)
            body = openai_api.parse_body(raw)
            openai_api.check_request(self.operation, body)
            self._read_context(headers, body)
            self._apply_prompt(body)
            decision = await self._route(body)
            route = self.gateway.router.route(decision.route)
            self._check_stop(decision.route)
            self._check_access(route)
            self._take_step(route)
            self.output_schema = _output_schema(body, route)
            decision = await self._guard_input(decision, route, body, len(raw))
            cached = await self._look_up_cache(route, decision, body, headers)
            if cached is not None:
                return cached
            self._reserve(decision, route, body)
            if body.get("stream"):
                return await self._open_stream(decision, body)
            served = await _unless_disconnected(self._execute(decision, body), disconnected)
            if decision.escalation is not None:
                served = await _unless_disconnected(
                    self._escalate(decision, route, body, served), disconnected
                )
            await self._police_tools(served.value, route, decision)
            await self._keep_response(served.value)
            reply = self._reply(served)
            self._cache_answer(served.value)
            return reply
        except ApiError as error:
            return self._refuse(error)
        except ExecutionFailed as failed:
            return self._refuse(openai_api.from_provider_error(failed.error, failed.target.name))
        except ClientDisconnected:
            self._fail("client_disconnected", 499)
            return Reply(499, {})

    # -- steps ------------------------------------------------------------------------

    async def _route(self, body: Body) -> Decision:
        """Classify (when the request names no intent), pick the route, shape its plan."""
        router, trace = self.gateway.router, self.trace
        declared_tier = trace.tier
        self.classification = await router.classify(body, trace.intent)
        if self.classification is not None:
            trace.intent = self.classification.intent or None
            self.routing["classification"] = self.classification.as_json()
        decision = router.decide(body.get("model"), trace.intent)
        self._note_decision(decision, body)
        decision = router.refine(decision, body, self.classification, declared_tier, trace.step)
        self._note_decision(decision, body)
        self.routing.update(decision.notes)
        return decision

    async def _escalate(
        self, decision: Decision, route: Route | None, body: Body, served: Served[Body]
    ) -> Served[Body]:
        """The large tier's answer when the small tier's fails a cheap check (console.gateway.escalation)."""
        assert decision.escalation is not None
        check = escalation.failed_check(
            served.value, decision.checks, self.output_schema, route.tools if route else None
        )
        plan = escalation.within(decision.escalation, decision.plan.timeouts.total_s - self._elapsed_s())
        if check is None or plan is None:
            return served
        small = served.value
        private = small.pop("_fleetdeck", None) or {}
        usage = Usage.from_openai(small.get("usage"))
        provider = self.gateway.providers[served.target.provider]
        price = self.gateway.prices.price(
            served.target.provider, provider.kind, served.target.model, usage, private.get("compute_s")
        )
        try:
            large = await self._execute(replace(decision, plan=plan), body)
        except ExecutionFailed:
            self.routing["escalation"] = {"check": check, "failed": True}
            small["_fleetdeck"] = private
            return served
        self.escalated = escalation.Escalated(check, served.target.name, usage, price.cost_usd or 0.0)
        self.routing["escalation"] = self.escalated.as_json()
        self.trace.reason_code, self.trace.tier = "escalation-check-failed", "large"
        return large

    def _elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def _authenticate(self, headers: Mapping[str, str]) -> None:
        if self.gateway.keys is None:
            return
        self.key = key = self.gateway.keys.authenticate(headers)
        self.trace.key_id, self.trace.environment = key.key_id, key.environment

    def _check_stop(self, route: str | None) -> None:
        try:
            self.gateway.stops.check(route)
        except ApiError:
            self.trace.status, self.trace.reason_code = "blocked", "route-stopped"
            raise

    def _check_access(self, route: Route | None) -> None:
        key = self.key
        if key is None:
            return
        if route is not None and not route.serves(key.environment):
            reserved = ", ".join(route.environments or ())
            raise ApiError(
                403,
                f"route {route.intent!r} serves {reserved} only; "
                f"key {key.name!r} belongs to {key.environment}",
                code="route_not_allowed",
            )
        if not key.may_use(route.intent if route else None):
            allowed = ", ".join(key.routes or ())
            raise ApiError(
                403, f"key {key.name!r} may use the routes {allowed} only", code="route_not_allowed"
            )

    def _take_step(self, route: Route | None) -> None:
        task = self.trace.task_id
        if route is None or route.max_steps_per_task is None or task is None:
            return
        if not self.gateway.steps.take(task, route.max_steps_per_task):
            self.trace.status = "blocked"
            raise ApiError(
                429,
                f"task {task!r} has made the {route.max_steps_per_task} calls route {route.intent!r} "
                "allows (max_steps_per_task): is an agent looping?",
                type_="requests",
                code="step_limit_exceeded",
            )

    def _reserve(self, decision: Decision, route: Route | None, body: Body) -> None:
        caps = self._caps(route)
        if not caps:
            return
        if self.operation != "embeddings" and not _max_tokens(body):
            body["max_tokens"] = route.default_max_tokens if route else DEFAULT_MAX_TOKENS
        amount = self._worst_case(decision, body)
        held = self.gateway.ledger.reserve(caps, amount)
        if isinstance(held, Refusal):
            self._over_budget(held)
        else:
            self.reservation = held

    # -- cache (console/gateway/cache.py) ------------------------------------------------

    async def _look_up_cache(
        self, route: Route | None, decision: Decision, body: Body, headers: Mapping[str, str]
    ) -> Reply | None:
        cache = self.gateway.cache
        if cache is None or route is None or self.operation != "chat":
            return None
        target = decision.plan.targets[0].name
        self.lookup = await cache.lookup(route, target, body, headers, self.trace.environment)
        if self.lookup is None:
            return None
        response_cache.note_lookup(self.trace, self.lookup)
        if not self.lookup.serves or self.lookup.entry is None:
            return None
        answer = response_cache.replay_body(self.lookup.entry, self.trace.request_id)
        await self._keep_response(answer)
        headers_out = {**self._headers(None), "X-Fleetdeck-Cache": self.lookup.kind}
        if not body.get("stream"):
            return Reply(200, headers_out, orjson.dumps(answer))
        self.trace.stream, self.trace.ttft_ms = True, (time.perf_counter() - self.started) * 1000
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = response_cache.replay_stream(answer, wants_usage)
        return Reply(
            200, {**headers_out, "Cache-Control": "no-cache"}, stream=response_cache.stream_events(events)
        )

    def _cache_answer(self, body: Body) -> None:
        if self.lookup is not None and self.gateway.cache is not None:
            self.gateway.cache.store(self.lookup, body, self.trace)

    # -- guards ---------------------------------------------------------------------------

    async def _guard_input(self, decision: Decision, route: Route | None, body: Body, size: int) -> Decision:
        """Redact PII for storage (and remote providers), score injection; block or reroute."""
        trace = self.trace
        threshold = route.injection_threshold if route else guards.DEFAULT_THRESHOLD
        if size > GUARD_INLINE_BYTES:  # a long scan would hold up every other request on the loop
            (self.request, pii), injection = await asyncio.to_thread(_scan, body, threshold)
        else:
            (self.request, pii), injection = _scan(body, threshold)
        self.pii_mode = route.pii if route else "redact"
        trace.pii_redactions = sum(pii.values())
        trace.injection_score = injection.score
        trace.guard_results = {"pii": pii, "injection": _redacted_signals(injection.to_json())}
        if injection.blocked(threshold):
            return self._injection(decision, route, injection.score)
        if pii and self.pii_mode == "block" and self._reaches_remote(decision):
            self._guard_event("guard.blocked", {"guard": "pii", "kinds": pii})
            self._blocked("risk-high-flagged")
            raise ApiError(
                400,
                f"the request holds personal data ({', '.join(sorted(pii))}) and route "
                f"{decision.route!r} refuses to send it to a remote provider (pii: block)",
                code="pii_blocked",
            )
        return decision

    def _injection(self, decision: Decision, route: Route | None, score: float) -> Decision:
        stricter = route.on_injection if route else "block"
        details = {"guard": "injection", "score": round(score, 4), "route": decision.route}
        if stricter == "block":
            self._guard_event("guard.blocked", details)
            self._blocked("risk-high-flagged")
            raise ApiError(
                400,
                f"the request looks like a prompt injection (score {score:.2f}); it was not sent",
                code="prompt_injection_blocked",
            )
        self._guard_event("guard.flagged", {**details, "rerouted_to": stricter})
        rerouted = self.gateway.router.decide(f"route:{stricter}", None)
        self._note_decision(rerouted, {"model": self.trace.request_model})
        self.trace.reason_code = "risk-high-flagged"
        return rerouted

    async def _police_tools(self, body: Body, route: Route | None, decision: Decision) -> None:
        """Remove tool calls the route does not allow; hold those that need a human's approval."""
        tools = route.tools if route else None
        if tools is None:
            return
        verdicts: dict[str, str] = {}
        for choice in body.get("choices") or ():
            message = choice.get("message") or {}
            calls = message.get("tool_calls") or []
            kept = [call for call in calls if await self._tool_verdict(call, tools, decision, verdicts)]
            if len(kept) == len(calls):
                continue
            refused = [f"{name}: {verdict}" for name, verdict in verdicts.items() if verdict != "approved"]
            note = "Tool calls withheld by Fleetdeck (" + "; ".join(refused) + ")."
            message["content"] = f"{message.get('content') or ''}\n{note}".strip()
            message["tool_calls"] = kept or None
            if not kept and choice.get("finish_reason") == "tool_calls":
                choice["finish_reason"] = "stop"
        if verdicts and isinstance(self.trace.guard_results, dict):
            self.trace.guard_results["tools"] = verdicts
        flagged = [name for name, verdict in verdicts.items() if verdict == "not allowed"]
        if flagged:
            self.trace.reason_code = "risk-high-flagged"
            self._guard_event("guard.flagged", {"guard": "tool_policy", "tools": flagged})

    async def _tool_verdict(
        self, call: Body, tools: ToolPolicy, decision: Decision, verdicts: dict[str, str]
    ) -> bool:
        function = call.get("function") or {}
        name = str(function.get("name"))
        if name in tools.allow:
            verdicts[name] = "allowed"
            return True
        if name not in tools.approval or self.gateway.approvals is None:
            verdicts[name] = "not allowed"
            return False
        held = HeldCall(
            approval_id=new_approval_id(),
            request_id=self.trace.request_id,
            route=decision.route,
            tool=name,
            arguments=guards.redact(str(function.get("arguments") or ""))[0],
            requested_by=self.key.name if self.key else "anonymous",
        )
        seconds_left = decision.plan.timeouts.total_s - (time.perf_counter() - self.started)
        verdict, _ = await self.gateway.approvals.hold(held, seconds_left)
        verdicts[name] = verdict
        return verdict == "approved"

    def _reaches_remote(self, decision: Decision) -> bool:
        return any(self.gateway.providers[t.provider].kind != "local" for t in decision.plan.targets)

    def _outbound(self, provider: Provider, body: Body) -> Body:
        """What a provider is sent: the redacted request for a remote one when the route redacts."""
        if provider.kind != "local" and self.pii_mode == "redact" and self.request is not None:
            return {**self.request, **{k: body[k] for k in ("max_tokens", "stream_options") if k in body}}
        return body

    def _blocked(self, reason: str) -> None:
        self.trace.status, self.trace.reason_code = "blocked", reason

    def _guard_event(self, action: str, payload: dict[str, Any]) -> None:
        key = self.key
        self.gateway.recorder.record_audit(
            AuditEvent(
                actor=key.name if key else "anonymous",
                actor_kind="key" if key else "system",
                action=action,
                subject=self.trace.request_id,
                payload={**payload, "workflow_id": self.trace.workflow_id},
            )
        )

    def _caps(self, route: Route | None) -> list[Cap]:
        caps, key = [], self.key
        if key is not None and key.daily_cap is not None:
            caps.append(Cap(f"key:{key.key_id}", "day", key.daily_cap))
        if key is not None and key.monthly_cap is not None:
            caps.append(Cap(f"key:{key.key_id}", "month", key.monthly_cap))
        if route is not None and route.max_budget_daily is not None:
            caps.append(Cap(f"route:{route.intent}", "day", route.max_budget_daily))
        workflow = self.gateway.policy.workflows.get(self.trace.workflow_id or "")
        if workflow is not None and workflow.max_budget_daily is not None:
            caps.append(Cap(f"workflow:{self.trace.workflow_id}", "day", workflow.max_budget_daily))
        return caps

    def _worst_case(self, decision: Decision, body: Body) -> float:
        worst = self._worst_of(decision.plan, body)
        if decision.escalation is not None:  # a second, larger call may follow the first
            worst += self._worst_of(decision.escalation, body)
        return worst

    def _worst_of(self, plan: Plan, body: Body) -> float:
        bound = Usage(input_tokens=_prompt_token_bound(body), output_tokens=_max_tokens(body) or 0)
        worst = 0.0
        for target in plan.targets:
            provider = self.gateway.providers[target.provider]
            cost = self.gateway.prices.worst_case(
                target.provider, provider.kind, target.model, bound, plan.timeouts.total_s
            )
            if cost is None:
                raise ApiError(
                    400,
                    f"{target.name} has no known price, and this call is under a hard budget cap: "
                    f"give it one under providers.{target.provider}.prices in the policy",
                    param="model",
                    code="model_unpriced",
                )
            worst = max(worst, cost)
        return worst

    def _over_budget(self, refusal: Refusal) -> None:
        """Refuse the call: an audit entry for it, and one more, the incident, for the cap's first breach."""
        trace = self.trace
        trace.status, trace.reason_code = "over_budget", "budget-exceeded"
        key, cap = self.key, refusal.cap
        details = {
            "period": cap.period,
            "cap_usd": cap.limit_usd,
            "spent_usd": refusal.spent_usd,
            "held_usd": refusal.held_usd,
            "asked_usd": refusal.asked_usd,
            "route": trace.route,
            "workflow_id": trace.workflow_id,
        }
        record = self.gateway.recorder.record_audit
        if refusal.first:
            record(
                AuditEvent(
                    actor="gateway",
                    actor_kind="system",
                    action="budget.breach",
                    subject=cap.scope,
                    payload=details,
                )
            )
        record(
            AuditEvent(
                actor=key.name if key else "anonymous",
                actor_kind="key" if key else "system",
                action="budget.exceeded",
                subject=cap.scope,
                payload={**details, "request_id": trace.request_id},
            )
        )
        raise ApiError(429, refusal.message(), type_="insufficient_quota", code="budget_exceeded")

    def _read_context(self, headers: Mapping[str, str], body: Body) -> None:
        context = {key: headers[header] for header, key in CONTEXT_HEADERS.items() if header in headers}
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            for key in CONTEXT_KEYS & metadata.keys():
                context.setdefault(key, str(metadata.pop(key)))
            if not metadata:
                del body["metadata"]
        trace = self.trace
        trace.workflow_id = context.get("workflow")
        trace.intent = context.get("intent")
        trace.task_id = context.get("task")
        trace.tier = context.get("tier")
        trace.trace_id = headers.get("x-fleetdeck-trace") or trace.request_id
        trace.parent_id = headers.get("x-fleetdeck-parent")
        if "step" in context:
            trace.step = _step(context["step"])
        if "prompt" in context:
            name, _, version = context["prompt"].partition("@")
            trace.prompt_name, trace.prompt_version = name, version or None

    def _apply_prompt(self, body: Body) -> None:
        """X-Fleetdeck-Prompt: the registry's template goes in front of the messages (quality/prompts.py)."""
        trace, prompts = self.trace, self.gateway.prompts
        if trace.prompt_name is None or prompts is None:
            return
        try:
            trace.prompt_version = prompts.apply(trace.prompt_name, trace.prompt_version, body).version
        except PromptError as error:
            raise ApiError(400, str(error), param="X-Fleetdeck-Prompt", code=error.code) from None

    def _note_decision(self, decision: Decision, body: Body) -> None:
        trace = self.trace
        trace.request_model = body.get("model")
        trace.route = decision.route
        trace.intent = trace.intent or decision.route
        trace.tier = trace.tier or decision.tier
        trace.reason_code = decision.reason_code

    async def _execute(self, decision: Decision, body: Body) -> Served[Body]:
        method = {"chat": "chat", "text_completion": "completion", "embeddings": "embeddings"}[self.operation]

        async def call(provider: Provider, model: str, seconds_left: float) -> Body:
            result: Body = await getattr(provider, method)(
                model, {**self._outbound(provider, body), "model": model}
            )
            if not isinstance(result, dict):
                raise ProviderError(
                    ErrorType.bad_response, f"{provider.name} answered a {type(result).__name__}"
                )
            return result

        return await self.gateway.executor.run(decision.plan, self.attempts, call)

    def _reply(self, served: Served[Body]) -> Reply:
        body = served.value
        private = body.pop("_fleetdeck", None) or {}
        answered = body.get("model") if isinstance(body.get("model"), str) else None
        self._settle(served.target, Usage.from_openai(body.get("usage")), private.get("compute_s"), answered)
        self._note_served(served)
        choices = body.get("choices") or []
        self.trace.finish_reasons = [str(c.get("finish_reason")) for c in choices if c.get("finish_reason")]
        self.trace.tool_calls = _tool_calls(choices)
        self._check_schema([_answer_text(c) for c in choices])
        self.trace.status, self.trace.http_status = "ok", 200
        return Reply(200, self._headers(served.target), orjson.dumps(body))

    async def _keep_response(self, body: Body) -> None:
        """The response as stored, redacted; a long one is scanned on a worker thread."""
        stored = _storable(body)
        if len(orjson.dumps(stored)) > GUARD_INLINE_BYTES:
            self._note_output(*await asyncio.to_thread(guards.redact_body, stored))
        else:
            self._note_output(*guards.redact_body(stored))

    def _check_schema(self, answers: list[str | None]) -> None:
        """Output guard: schema validity of the answers, on the raw (unredacted) text."""
        if self.output_schema is None:
            return
        verdict = schema_guard.check_answers(answers, self.output_schema)
        self.trace.schema_valid = verdict.valid
        if isinstance(self.trace.guard_results, dict):
            self.trace.guard_results["output_schema"] = verdict.as_json()

    def _note_output(self, redacted: Body, found: dict[str, int]) -> None:
        """Keep the redacted response, with output PII counted on the trace."""
        self.response = redacted
        if found and isinstance(self.trace.guard_results, dict):
            self.trace.guard_results["output_pii"] = found

    # -- streams ----------------------------------------------------------------------

    async def _open_stream(self, decision: Decision, body: Body) -> Reply:
        if self.operation != "chat":
            raise openai_api.bad_request("only chat completions can be streamed", param="stream")
        self.trace.stream = True
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        upstream_body = {
            **body,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        timeouts = decision.plan.timeouts

        async def first_chunk(provider: Provider, model: str, seconds_left: float) -> tuple[Any, Body]:
            chunks = provider.chat_stream(model, {**self._outbound(provider, upstream_body), "model": model})
            try:
                async with asyncio.timeout(min(seconds_left, timeouts.first_token_s)):
                    return chunks, await anext(chunks)
            except StopAsyncIteration:
                raise ProviderError(
                    ErrorType.bad_response, "the stream ended before its first chunk"
                ) from None
            except BaseException:
                await chunks.aclose()
                raise

        served = await self.gateway.executor.run(decision.plan, self.attempts, first_chunk)
        self.trace.ttft_ms = (time.perf_counter() - self.started) * 1000
        self._note_served(served)
        self.streaming = True
        chunks, first = served.value
        deadline = self.started + timeouts.total_s
        relay = self._relay(served.target, chunks, first, wants_usage, timeouts.idle_s, deadline)
        headers = {**self._headers(served.target), "Cache-Control": "no-cache"}
        return Reply(200, headers, stream=relay)

    async def _relay(
        self,
        target: Target,
        chunks: AsyncGenerator[Body, None],
        first: Body,
        wants_usage: bool,
        idle_s: float,
        deadline: float,
    ) -> AsyncIterator[bytes]:
        usage, compute_s, finish, deltas, answered = None, None, [], 0, None
        text: dict[int, list[str]] = {}
        trace = self.trace
        try:
            chunk: Body | None = first
            while chunk is not None:
                private = chunk.pop("_fleetdeck", None)
                if private:
                    compute_s = private.get("compute_s", compute_s)
                if chunk.get("usage"):
                    usage = Usage.from_openai(chunk["usage"])
                if isinstance(chunk.get("model"), str):
                    answered = chunk["model"]
                deltas += _collect_text(chunk, text)
                finish += [
                    str(c["finish_reason"]) for c in chunk.get("choices") or () if c.get("finish_reason")
                ]
                if chunk.get("choices") or wants_usage:
                    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
                chunk = await _next_chunk(chunks, min(idle_s, deadline - time.perf_counter()))
            yield SSE_DONE
            trace.status, trace.http_status = "ok", 200
            self._check_schema(["".join(text[i]) for i in sorted(text)])
        except (ProviderError, Exception) as exc:
            error = exc if isinstance(exc, ProviderError) else _unexpected(exc, target)
            trace.status, trace.error_type, trace.http_status = "partial", error.error_type.value, 200
            api = openai_api.from_provider_error(error, target.name)
            yield b"data: " + orjson.dumps({"error": orjson.loads(api.envelope())["error"]}) + b"\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            trace.status, trace.error_type, trace.http_status = "partial", "client_disconnected", 499
            raise
        finally:
            await chunks.aclose()
            trace.finish_reasons = finish
            # Inline: a generator closed by its client cannot await in `finally`; max_tokens bounds it.
            assembled = [{"index": i, "message": {"content": "".join(parts)}} for i, parts in text.items()]
            self._note_output(*guards.redact_body({"choices": assembled}))
            if usage is None:  # cut before the usage chunk: price what was relayed
                elapsed = time.perf_counter() - self.started
                usage = Usage(output_tokens=deltas)
                self._settle(target, usage, compute_s or elapsed, answered, estimated=True)
            else:
                self._settle(target, usage, compute_s, answered)
                if trace.status == "ok":
                    self._cache_answer(response_cache.assembled_answer(text, finish, answered, usage))
            self.finish()

    # -- the trace --------------------------------------------------------------------

    def _note_served(self, served: Served[Any]) -> None:
        trace = self.trace
        trace.provider = served.target.provider
        trace.response_model = served.target.name
        if served.fell_back:
            trace.reason_code = "provider-outage-fallback"
            failed = next((a.target.name for a in self.attempts if a.status != "ok"), "?")
            if self.gateway.fallbacks is not None:
                self.gateway.fallbacks.fell_back(trace.route, failed, served.target.name, trace.request_id)

    def _settle(
        self,
        target: Target,
        usage: Usage,
        compute_s: float | None,
        answered: str | None = None,
        estimated: bool = False,
    ) -> None:
        trace = self.trace
        provider = self.gateway.providers[target.provider]
        price = self.gateway.prices.price(
            target.provider, provider.kind, target.model, usage, compute_s, answered
        )
        trace.cost_usd = price.cost_usd
        if self.escalated is not None:  # both tiers' attempts are paid for
            usage = escalation.combined(self.escalated.usage, usage)
            trace.cost_usd = (price.cost_usd or 0.0) + self.escalated.cost_usd
        trace.input_tokens, trace.output_tokens = usage.input_tokens, usage.output_tokens
        trace.cache_read_tokens, trace.reasoning_tokens = usage.cache_read_tokens, usage.reasoning_tokens
        trace.price_source = f"{price.source} (estimated)" if estimated else price.source
        if self.reservation is not None:
            self.gateway.ledger.settle(self.reservation, trace.cost_usd or 0.0)

    def _refuse(self, error: ApiError) -> Reply:
        if self.trace.status in ("blocked", "over_budget"):
            self.trace.error_type, self.trace.http_status = error.error_type, error.status
        else:
            self._fail(error.error_type, error.status)
        headers = {"Content-Type": "application/json", **error.headers, **self._headers(None)}
        return Reply(error.status, headers, error.envelope())

    def _fail(self, error_type: str, status: int) -> None:
        self.trace.status, self.trace.error_type, self.trace.http_status = "error", error_type, status

    def _headers(self, target: Target | None) -> dict[str, str]:
        headers = {"X-Fleetdeck-Request-Id": self.trace.request_id}
        if self.trace.route:
            headers["X-Fleetdeck-Route"] = self.trace.route
        if target is not None:
            headers["X-Fleetdeck-Model"] = target.name
        if self.trace.reason_code:
            headers["X-Fleetdeck-Reason"] = self.trace.reason_code
        return headers

    def finish(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        if self.reservation is not None:  # a call that failed before it was priced
            self.gateway.ledger.settle(self.reservation, 0.0)
        trace = self.trace
        trace.ts_end = utc_now()
        trace.latency_ms = (time.perf_counter() - self.started) * 1000
        trace.attempts = sum(1 for a in self.attempts if a.status != "skipped")
        trace.attempt_log = [a.as_json() for a in self.attempts]
        self.gateway.router.observe(trace.route, self.attempts)
        if self.routing:
            found = trace.guard_results if isinstance(trace.guard_results, dict) else {}
            trace.guard_results = {**found, "routing": self.routing}
        if self.request is None:
            self.gateway.recorder.record(trace)
        else:
            trace.payload_ref = trace.request_id
            payload = Payload(
                payload_ref=trace.request_id,
                request_id=trace.request_id,
                request=self.request,
                response=self.response,
            )
            self.gateway.recorder.record(trace, payload)
        if self.gateway.after_trace is not None:
            self.gateway.after_trace(trace, self.request, self.response)


def _output_schema(body: Body, route: Route | None) -> dict[str, Any] | None:
    try:
        requested = schema_guard.requested_schema(body)
    except schema_guard.InvalidSchema as error:
        raise openai_api.bad_request(str(error), param="response_format") from None
    return requested if requested is not None else (route.output_schema if route else None)


def _answer_text(choice: Body) -> str | None:
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text if isinstance(text, str) else None


def _unexpected(exc: Exception, target: Target) -> ProviderError:
    log.exception("provider %s failed unexpectedly", target.name, exc_info=exc)
    return ProviderError(ErrorType.bad_response, f"{type(exc).__name__} in the provider")


def _storable(body: Body) -> Body:
    """What a payload keeps of a response: embedding vectors are counted, not stored."""
    body = {key: value for key, value in body.items() if key != "_fleetdeck"}  # the gateway's own notes
    data = body.get("data")
    if body.get("object") != "list" or not isinstance(data, list):
        return body
    vectors = [
        {"index": d.get("index"), "dimensions": len(d.get("embedding") or ())}
        for d in data
        if isinstance(d, dict)
    ]
    return {**body, "data": vectors}


def _scan(body: Body, threshold: float) -> tuple[tuple[Body, dict[str, int]], guards.InjectionResult]:
    return guards.redact_body(body), guards.score_request(body, threshold)


def _collect_text(chunk: Body, text: dict[int, list[str]]) -> int:
    """Append a stream chunk's content deltas per choice; returns how many it carried."""
    carried = 0
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            text.setdefault(int(choice.get("index") or 0), []).append(str(content))
            carried += 1
    return carried


def _redacted_signals(found: dict[str, Any]) -> dict[str, Any]:
    """Injection evidence is quoted from the request: no PII from it reaches the trace."""
    for signal in found.get("signals") or ():
        signal["evidence"] = guards.redact(str(signal.get("evidence") or ""))[0]
    return found


def _max_tokens(body: Body) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _prompt_token_bound(body: Body) -> int:
    """An upper bound on prompt tokens without a tokenizer: a token is at least one byte,
    and the JSON around each message outweighs the chat template's tokens."""
    return sum(len(orjson.dumps(body.get(name))) for name in ("messages", "prompt", "input", "tools"))


def _step(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise openai_api.bad_request(
            f"X-Fleetdeck-Step must be an integer, not {value!r}", param="step"
        ) from None


def _tool_calls(choices: list[Body]) -> list[dict[str, Any]] | None:
    """Names and ids of the tools the model called; arguments stay in the payload."""
    calls = [
        {"id": call.get("id"), "name": (call.get("function") or {}).get("name")}
        for choice in choices
        for call in (choice.get("message") or {}).get("tool_calls") or ()
    ]
    return calls or None


async def _next_chunk(chunks: AsyncGenerator[Body, None], timeout_s: float) -> Body | None:
    try:
        async with asyncio.timeout(max(timeout_s, 0)):
            return await anext(chunks)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise ProviderError(ErrorType.timeout, f"the stream went quiet for {timeout_s:.1f}s") from None


async def _unless_disconnected(work: Awaitable[Served[Body]], disconnected: Disconnected) -> Served[Body]:
    """Await `work`, cancelling it (and so the upstream call) if the client goes away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise ClientDisconnected
