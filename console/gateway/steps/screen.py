"""Step 4: screen the input (console.guards): PII redacted for storage and remote providers,
an injection score (patterns and the MiniLM head, console/gateway/injection_guard.py) that
blocks the call, flags it or reroutes it, personal data a route keeps home."""

from __future__ import annotations

import asyncio
from typing import Any

from console import guards
from console.gateway.call import GUARD_INLINE_BYTES, Call
from console.gateway.injection_guard import InjectionGuard, InjectionVerdict, patterns_only
from console.gateway.openai_api import ApiError
from console.providers.base import Body


async def screen_input(call: Call) -> None:
    trace, route = call.trace, call.route
    threshold = route.injection_threshold if route else guards.DEFAULT_THRESHOLD
    assert call.request is not None
    guard = call.services.injection if route is None or route.injection_guard == "combined" else None
    known, body = None, call.body
    if call.request.size <= GUARD_INLINE_BYTES:
        known = patterns_only(body, threshold) if guard is None else guard.score_known(body, threshold)
    if known is None:
        # The model on a text it has not read, or a long scan, would hold up every request on the loop.
        (call.stored_request, pii), injection = await asyncio.to_thread(_scan, body, threshold, guard)
    else:
        call.stored_request, pii = guards.redact_body(body)
        injection = known
    call.pii_mode = route.pii if route else "redact"
    trace.pii_redactions = sum(pii.values())
    trace.injection_score = injection.result.score
    found = _redacted_signals(injection.to_json())
    trace.guard_results = {"pii": pii, "injection": found}
    if injection.result.blocked(threshold):
        if route is not None and route.on_injection == "flag":
            # The policy's choice: the call goes on, flagged in its trace and the audit log.
            found["flagged"] = True
            call.audit("guard.flagged", _details(call, injection.result.score) | {"action": "flag"})
        else:
            _injection(call, injection.result.score)
            return
    if pii and call.pii_mode == "block" and call.reaches_remote():
        call.audit("guard.blocked", {"guard": "pii", "kinds": pii})
        call.blocked("risk-high-flagged")
        raise ApiError(
            400,
            f"the request holds personal data ({', '.join(sorted(pii))}) and route "
            f"{trace.route!r} refuses to send it to a remote provider (pii: block)",
            code="pii_blocked",
        )


def _injection(call: Call, score: float) -> None:
    """Block the call, or send it to the stricter route the policy names."""
    route, trace = call.route, call.trace
    stricter = route.on_injection if route else "block"
    details = _details(call, score)
    if stricter == "block":
        call.audit("guard.blocked", details)
        call.blocked("risk-high-flagged")
        raise ApiError(
            400,
            f"the request looks like a prompt injection (score {score:.2f}); it was not sent",
            code="prompt_injection_blocked",
        )
    call.audit("guard.flagged", {**details, "rerouted_to": stricter})
    rerouted = call.services.router.decide(f"route:{stricter}", None)
    call.note_decision(rerouted, trace.request_model)
    trace.reason_code = "risk-high-flagged"


def _details(call: Call, score: float) -> dict[str, Any]:
    return {"guard": "injection", "score": round(score, 4), "route": call.trace.route}


def _scan(
    body: Body, threshold: float, guard: InjectionGuard | None
) -> tuple[tuple[Body, dict[str, int]], InjectionVerdict]:
    injection = guard.score(body, threshold) if guard is not None else patterns_only(body, threshold)
    return guards.redact_body(body), injection


def _redacted_signals(found: dict[str, Any]) -> dict[str, Any]:
    """Injection evidence is quoted from the request: no PII from it reaches the trace."""
    for signal in found.get("signals") or ():
        signal["evidence"] = guards.redact(str(signal.get("evidence") or ""))[0]
    return found
