"""Step 6: reserve the call's worst-case cost against every cap that applies, all or none
(console.gateway.budget); a refusal is audited and answered 429. When the cluster's shared
ledger cannot be reached, a capped call is refused with a 503 (never served unbudgeted)
and an uncapped one follows `cluster_uncapped` (serve or refuse)."""

from __future__ import annotations

from console.gateway import budget
from console.gateway.budget import LedgerUnavailable, Refusal
from console.gateway.call import Call
from console.gateway.openai_api import ApiError
from console.policy import DEFAULT_MAX_TOKENS


async def reserve(call: Call) -> None:
    services, trace, route, decision = call.services, call.trace, call.route, call.decision
    assert decision is not None and call.request is not None
    caps = budget.caps_for(call.key, route, services.policy, trace.workflow_id)
    if not caps:
        outage = services.ledger.outage()
        if outage is not None and services.refuse_uncapped_in_outage:
            raise unavailable(call, outage)
        return
    if call.operation != "embeddings" and not call.request.max_tokens():
        call.body["max_tokens"] = route.default_max_tokens if route else DEFAULT_MAX_TOKENS
    plans = [decision.plan] if decision.escalation is None else [decision.plan, decision.escalation]
    amount = budget.worst_case(plans, call.body, services.providers, services.prices)
    lease_s = sum(plan.timeouts.total_s for plan in plans)  # a hold outlives its call by a margin only
    try:
        held = await services.ledger.reserve(caps, amount, lease_s)
    except LedgerUnavailable as exc:
        raise unavailable(call, str(exc)) from None
    if not isinstance(held, Refusal):
        call.reservation = held
        return
    trace.status, trace.reason_code = "over_budget", "budget-exceeded"
    details = {"route": trace.route, "workflow_id": trace.workflow_id, "request_id": trace.request_id}
    budget.audit_refusal(services.recorder, held, call.key, details)
    raise ApiError(429, held.message(), type_="insufficient_quota", code="budget_exceeded")


def unavailable(call: Call, why: str) -> ApiError:
    call.trace.status, call.trace.reason_code = "error", "ledger-unavailable"
    call.trace.error_type = "ledger_unavailable"
    return ApiError(503, why, type_="api_error", code="ledger_unavailable")
