"""Step 1b: a call that cites a handoff (X-Fleetdeck-Handoff, or `handoff` in its metadata) is
served only once that handoff was accepted under its contract, for this task and this consumer
(console.gateway.handoffs). A handoff may also be submitted with the call that consumes it
(`metadata.handoff` as the document `POST /v1/handoffs` takes): the call waits for a judge's
gate, and is refused, naming the held handoff, while a human's gate holds it."""

from __future__ import annotations

from console.gateway.call import Call
from console.gateway.handoffs import Handoffs
from console.gateway.openai_api import ApiError

JUDGE_WAIT_S = 120.0  # a judge gate's decision, waited for within the call


async def check_handoff(call: Call) -> None:
    if call.handoff is None and call.handoff_submitted is None:
        return
    trace, handoffs = call.trace, call.services.handoffs
    try:
        if handoffs is None:
            raise ApiError(
                409,
                "this call cites a handoff, but the policy has no `handoffs:` contracts",
                code="handoff_not_accepted",
            )
        if call.handoff_submitted is not None:
            call.handoff = await _submit(call, handoffs)
        assert call.handoff is not None
        handoffs.check_cited(call.handoff, trace.task_id, trace.workflow_id, trace.request_id)
    except ApiError:
        call.blocked("handoff-not-accepted")
        raise


async def _submit(call: Call, handoffs: Handoffs) -> str:
    assert call.handoff_submitted is not None
    submitted_by = call.key.name if call.key else "anonymous"
    handoff = await handoffs.submit(call.handoff_submitted, submitted_by, call.trace.task_id)
    if handoff.state == "held" and handoff.gate.get("kind") == "judge":
        handoff = await handoffs.read_decided(handoff.handoff_id, JUDGE_WAIT_S)
    named = {"X-Fleetdeck-Handoff": handoff.handoff_id}
    if handoff.state == "accepted":
        call.reply_headers.update(named)
        return handoff.handoff_id
    if handoff.state == "refused":
        message = f"handoff {handoff.handoff_id!r} was refused: {handoff.problem}"
        raise ApiError(422, message, code="handoff_refused", headers=named)
    message = (
        f"handoff {handoff.handoff_id!r} is held for a human's approval: "
        "once approved, call again citing it (X-Fleetdeck-Handoff)"
    )
    raise ApiError(409, message, code="handoff_not_accepted", headers=named)
