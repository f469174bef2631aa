"""Step 1b: a call that cites a handoff (X-Fleetdeck-Handoff) is served only once that handoff
was accepted under its contract, for this task and this consumer (console.gateway.handoffs)."""

from __future__ import annotations

from console.gateway.call import Call
from console.gateway.openai_api import ApiError


async def check_handoff(call: Call) -> None:
    if call.handoff is None:
        return
    trace, handoffs = call.trace, call.services.handoffs
    try:
        if handoffs is None:
            raise ApiError(
                409,
                f"handoff {call.handoff!r} does not exist: the policy has no `handoffs:`",
                code="handoff_not_accepted",
            )
        handoffs.check_cited(call.handoff, trace.task_id, trace.workflow_id, trace.request_id)
    except ApiError:
        call.blocked("handoff-not-accepted")
        raise
