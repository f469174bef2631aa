"""Step 8a: small-to-large escalation (console.gateway.escalation): when the small tier's
answer fails one of the route's cheap checks, the large tier answers under what is left
of the deadline, and both tiers are paid for."""

from __future__ import annotations

from console.gateway import escalation
from console.gateway.call import Call
from console.gateway.executor import ExecutionFailed
from console.gateway.steps.execute import run_plan, unless_disconnected
from console.providers.base import Usage


async def escalate(call: Call) -> None:
    decision, served = call.decision, call.served
    assert decision is not None
    if decision.escalation is None or served is None:
        return
    tools = call.route.tools if call.route else None
    check = escalation.failed_check(served.value, decision.checks, call.output_schema, tools)
    plan = escalation.within(decision.escalation, decision.plan.timeouts.total_s - call.elapsed_s())
    if check is None or plan is None:
        return
    small = served.value
    private = small.pop("_fleetdeck", None) or {}
    usage = Usage.from_openai(small.get("usage"))
    services, target = call.services, served.target
    kind = services.providers[target.provider].kind
    price = services.prices.price(target.provider, kind, target.model, usage, private.get("compute_s"))
    try:
        large = await unless_disconnected(call, run_plan(call, plan))
    except ExecutionFailed:
        call.routing["escalation"] = {"check": check, "failed": True}
        small["_fleetdeck"] = private
        return
    call.escalated = escalation.Escalated(check, target.name, usage, price.cost_usd or 0.0)
    call.routing["escalation"] = call.escalated.as_json()
    call.trace.reason_code, call.trace.tier = "escalation-check-failed", "large"
    call.served = large
