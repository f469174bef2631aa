"""Step 10: the real cost from the upstream's usage (console.gateway.pricing; local calls by
compute seconds), the reservation settled to it, and what answered on the trace."""

from __future__ import annotations

from typing import Any

from console.gateway import escalation
from console.gateway.call import Call
from console.gateway.executor import Target
from console.providers.base import NATIVE, Body, Usage


async def settle(call: Call) -> None:
    served = call.served
    assert served is not None
    body = served.value
    private = body.pop("_fleetdeck", None) or {}
    call.native_answer = body.pop(NATIVE, None)  # the upstream's own answer, beside the canonical one
    answered = body.get("model") if isinstance(body.get("model"), str) else None
    settle_cost(call, served.target, Usage.from_openai(body.get("usage")), private.get("compute_s"), answered)
    call.note_served(served)
    choices = body.get("choices") or []
    call.trace.finish_reasons = [str(c.get("finish_reason")) for c in choices if c.get("finish_reason")]
    call.trace.tool_calls = called_tools(choices)
    call.answer = body


def settle_cost(
    call: Call,
    target: Target,
    usage: Usage,
    compute_s: float | None,
    answered: str | None = None,
    estimated: bool = False,
) -> None:
    trace, services = call.trace, call.services
    kind = services.providers[target.provider].kind
    price = services.prices.price(target.provider, kind, target.model, usage, compute_s, answered)
    trace.cost_usd = price.cost_usd
    if call.escalated is not None:  # both tiers' attempts are paid for
        usage = escalation.combined(call.escalated.usage, usage)
        trace.cost_usd = (price.cost_usd or 0.0) + call.escalated.cost_usd
    trace.input_tokens, trace.output_tokens = usage.input_tokens, usage.output_tokens
    trace.cache_read_tokens, trace.reasoning_tokens = usage.cache_read_tokens, usage.reasoning_tokens
    trace.cache_write_tokens = usage.cache_write_tokens
    trace.price_source = f"{price.source} (estimated)" if estimated else price.source
    if call.reservation is not None:
        services.ledger.settle(call.reservation, trace.cost_usd or 0.0)


def called_tools(choices: list[Body]) -> list[dict[str, Any]] | None:
    """Names and ids of the tools the model called; arguments stay in the payload."""
    calls = [
        {"id": call.get("id"), "name": (call.get("function") or {}).get("name")}
        for choice in choices
        for call in (choice.get("message") or {}).get("tool_calls") or ()
    ]
    return calls or None
