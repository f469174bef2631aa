"""The worst case of calls not yet made, priced as the reserve step would price them.

A job that must stay under a budget of its own (`fleetdeck prompts optimize`) asks the
instance that will answer its calls, through the admin API's `price` action, what each
call may cost at most: the route's plan (and its large tier's, when it escalates), each
target's dearest rate for the token bounds given, local targets by their deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console.errors import Invalid
from console.gateway import budget
from console.gateway.openai_api import ApiError
from console.gateway.services import GatewayServices
from console.providers.base import Usage


def answer(gateway: GatewayServices | None, request: Mapping[str, Any]) -> dict[str, Any]:
    """`{"items": [{"model", "input_tokens", "output_tokens"}, …]}` → `{"worst_usd": [USD | None, …]}`
    (None: a target without a known price)."""
    if gateway is None:
        raise Invalid("no gateway is open here, so nothing can be priced", code="price_refused")
    items = request.get("items")
    if not isinstance(items, list):
        raise Invalid("send {'items': [{'model', 'input_tokens', 'output_tokens'}, …]}", code="price_refused")
    return {"worst_usd": [_worst(gateway, item) for item in items]}


def _worst(gateway: GatewayServices, item: Any) -> float | None:
    try:
        model = str(item["model"])
        bound = Usage(input_tokens=int(item["input_tokens"]), output_tokens=int(item["output_tokens"]))
    except (KeyError, TypeError, ValueError):
        raise Invalid(f"not a call to price: {item!r}", code="price_refused") from None
    try:
        decision = gateway.router.decide(model, None)
    except ApiError as exc:
        raise Invalid(exc.message, code="price_refused") from None
    plans = [decision.plan] if decision.escalation is None else [decision.plan, decision.escalation]
    try:
        return sum(budget.worst_of(plan, bound, gateway.providers, gateway.prices) for plan in plans)
    except ApiError:  # a target without a price
        return None
