"""Step 4: screen the input (console.guards): PII redacted for storage and remote providers,
an injection score that blocks the call or reroutes it, personal data a route keeps home."""

from __future__ import annotations

import asyncio
from typing import Any

from console import guards
from console.gateway.call import GUARD_INLINE_BYTES, Call
from console.gateway.openai_api import ApiError
from console.providers.base import Body


async def screen_input(call: Call) -> None:
    trace, route = call.trace, call.route
    threshold = route.injection_threshold if route else guards.DEFAULT_THRESHOLD
    assert call.request is not None
    if call.request.size > GUARD_INLINE_BYTES:  # a long scan would hold up every request on the loop
        (call.stored_request, pii), injection = await asyncio.to_thread(_scan, call.body, threshold)
    else:
        (call.stored_request, pii), injection = _scan(call.body, threshold)
    call.pii_mode = route.pii if route else "redact"
    trace.pii_redactions = sum(pii.values())
    trace.injection_score = injection.score
    trace.guard_results = {"pii": pii, "injection": _redacted_signals(injection.to_json())}
    if injection.blocked(threshold):
        _injection(call, injection.score)
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
    details = {"guard": "injection", "score": round(score, 4), "route": trace.route}
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


def _scan(body: Body, threshold: float) -> tuple[tuple[Body, dict[str, int]], guards.InjectionResult]:
    return guards.redact_body(body), guards.score_request(body, threshold)


def _redacted_signals(found: dict[str, Any]) -> dict[str, Any]:
    """Injection evidence is quoted from the request: no PII from it reaches the trace."""
    for signal in found.get("signals") or ():
        signal["evidence"] = guards.redact(str(signal.get("evidence") or ""))[0]
    return found
