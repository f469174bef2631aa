"""Step 3: the route and its ordered plan of targets, with the reason code; then what the
route allows this call (stops, environments, the key's routes, fan-out per task) and
what its answers must match (console.gateway.router)."""

from __future__ import annotations

from typing import Any

from console.gateway import openai_api
from console.gateway.call import Call
from console.gateway.openai_api import ApiError
from console.guards import schema as schema_guard
from console.policy import Route
from console.providers.base import Body


async def choose_route(call: Call) -> None:
    await _decide(call)
    decision = call.decision
    assert decision is not None
    call.route = route = call.services.router.route(decision.route)
    _check_stop(call, decision.route)
    _check_access(call, route)
    _take_step(call, route)
    call.output_schema = _output_schema(call.body, route)


async def _decide(call: Call) -> None:
    """Classify (when the request names no intent), pick the route, shape its plan."""
    router, trace, body = call.services.router, call.trace, call.body
    declared_tier = trace.tier
    call.classification = await router.classify(body, trace.intent)
    if call.classification is not None:
        trace.intent = call.classification.intent or None
        call.routing["classification"] = call.classification.as_json()
    decision = router.decide(body.get("model"), trace.intent)
    call.note_decision(decision, body.get("model"))
    decision = router.refine(decision, body, call.classification, declared_tier, trace.step)
    call.note_decision(decision, body.get("model"))
    call.routing.update(decision.notes)


def _check_stop(call: Call, route: str | None) -> None:
    try:
        call.services.stops.check(route)
    except ApiError:
        call.blocked("route-stopped")
        raise


def _check_access(call: Call, route: Route | None) -> None:
    key = call.key
    if key is None:
        return
    if route is not None and not route.serves(key.environment):
        reserved = ", ".join(route.environments or ())
        raise ApiError(
            403,
            f"route {route.intent!r} serves {reserved} only; key {key.name!r} belongs to {key.environment}",
            code="route_not_allowed",
        )
    if not key.may_use(route.intent if route else None):
        allowed = ", ".join(key.routes or ())
        raise ApiError(403, f"key {key.name!r} may use the routes {allowed} only", code="route_not_allowed")


def _take_step(call: Call, route: Route | None) -> None:
    task = call.trace.task_id
    if route is None or route.max_steps_per_task is None or task is None:
        return
    if not call.services.steps.take(task, route.max_steps_per_task):
        call.trace.status = "blocked"
        raise ApiError(
            429,
            f"task {task!r} has made the {route.max_steps_per_task} calls route {route.intent!r} "
            "allows (max_steps_per_task): is an agent looping?",
            type_="requests",
            code="step_limit_exceeded",
        )


def _output_schema(body: Body, route: Route | None) -> dict[str, Any] | None:
    try:
        requested = schema_guard.requested_schema(body)
    except schema_guard.InvalidSchema as error:
        raise openai_api.bad_request(str(error), param="response_format") from None
    return requested if requested is not None else (route.output_schema if route else None)
