"""One call through the gateway: the ordered steps of DESIGN.md's data flow, nothing else.

An ingress adapter (console.gateway.ingress) parses the wire request into the canonical
call; each step (console.gateway.steps) takes the call state, does its one job and
writes what it found back; the adapter renders the answer, the stream or the refusal
in its protocol's shape. Every request yields exactly one trace: the call records it
once (`Call.finish`, the record step), when its reply is built, or, for a stream, when
the relay has passed its last event.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Mapping

from console.gateway import openai_api
from console.gateway.call import Call, ClientDisconnected, Disconnected
from console.gateway.executor import ExecutionFailed
from console.gateway.ingress import Ingress, Reply
from console.gateway.openai_api import ApiError
from console.gateway.services import GatewayServices
from console.gateway.steps import authenticate, context
from console.gateway.steps.cache_lookup import look_up_cache
from console.gateway.steps.count_tokens import count_tokens
from console.gateway.steps.escalate import escalate
from console.gateway.steps.execute import execute
from console.gateway.steps.handoff import check_handoff
from console.gateway.steps.keep import keep
from console.gateway.steps.limit import apply_rate_limits
from console.gateway.steps.police_tools import police_tools
from console.gateway.steps.prompt import apply_prompt
from console.gateway.steps.reserve import reserve
from console.gateway.steps.route import choose_route
from console.gateway.steps.screen import screen_input
from console.gateway.steps.settle import settle
from console.store.recorder import RecorderUnavailable

Step = Callable[[Call], Awaitable[None]]

# Until the call has an answer: a token count answers at 4b, a cache hit at 5, a stream at 7.
BEFORE_ANSWER: tuple[Step, ...] = (
    context.read_context,  # Fleetdeck's context: workflow, task, step, tier, prompt
    check_handoff,  # the handoff it consumes is accepted
    apply_prompt,  # 2 the registry's template (X-Fleetdeck-Prompt)
    choose_route,  # 3 route, plan and reason code; stops, access, fan-out
    apply_rate_limits,  # requests, tokens and calls in flight per key, environment, route
    screen_input,  # 4 PII, injection, personal data kept home
    count_tokens,  # a count_tokens call is answered here, with the count
    look_up_cache,  # 5 exact, then semantic
    reserve,  # 6 the worst case against every cap
    execute,  # 7 attempts under one deadline; a stream goes to the relay
)
# A JSON answer's; a stream's settle and keep are the relay's, as its last chunk passes.
AFTER_ANSWER: tuple[Step, ...] = (
    escalate,  # 8 the large tier when the small tier's answer fails a check
    police_tools,  # 8 the route's tool policy and approvals
    settle,  # 10 the real cost (before keep: the cache keeps an answer with its cost)
    keep,  # 9 output guards, the stored response, the cache
)


class Gateway(GatewayServices):
    """The gateway's parts, and one call through them."""

    async def handle(
        self, ingress: Ingress, raw: bytes, headers: Mapping[str, str], disconnected: Disconnected
    ) -> Reply:
        call = Call(self, ingress.operation, headers, ingress.protocol, disconnected)
        call.trace.request_hash = hashlib.sha256(raw).hexdigest()
        try:
            self.recorder.check_accepting()  # fail closed: a call the spool cannot keep is not served
            return await self._handle(call, ingress, raw)
        except RecorderUnavailable as unrecorded:
            # Its trace (or an audit entry) could not be spooled: the reply it would have had is
            # withheld, and the refusal cannot be recorded either.
            call.recorded = True
            return ingress.refuse(call, call.refused(openai_api.unrecorded(unrecorded.message)))

    async def _handle(self, call: Call, ingress: Ingress, raw: bytes) -> Reply:
        try:
            await authenticate.authenticate(call)  # 1, before the body is even parsed
            call.request = ingress.parse(raw)
            await call.request.resume(call)  # e.g. a stored conversation it continues
            await _run(call)
            return ingress.render(call)
        except ApiError as error:
            return ingress.refuse(call, call.refused(error))
        except ExecutionFailed as failed:
            upstream = openai_api.from_provider_error(failed.error, failed.target.name)
            return ingress.refuse(call, call.refused(upstream))
        except ClientDisconnected:
            call.fail("client_disconnected", 499)
            return Reply(499, {})
        finally:
            if not call.streaming:
                call.finish()  # 11 record

    def record_request(
        self,
        operation: str,
        headers: Mapping[str, str],
        error: ApiError | None = None,
        task_id: str | None = None,
        workflow_id: str | None = None,
    ) -> dict[str, str]:
        """The one trace of a request that calls no model (model list, outcome, unknown path)."""
        call = Call(self, operation, headers)
        with contextlib.suppress(ApiError):  # a bad context header must not hide the request
            context.read(call, {})
        if self.keys is not None and (error is None or error.status != 401):
            with contextlib.suppress(ApiError):
                authenticate.identify(call)
        trace = call.trace
        trace.task_id = task_id or trace.task_id
        trace.workflow_id = workflow_id or trace.workflow_id
        if error is None:
            trace.status, trace.http_status = "ok", 200
        else:
            call.fail(error.error_type, error.status)
        call.finish()
        return call.refusal_headers()

    def authenticate(self, headers: Mapping[str, str]) -> str:
        """The key's name; the 401 ApiError when keys are required and the request has no valid one."""
        if self.keys is None:
            return "anonymous"
        return self.keys.authenticate(headers).name


async def _run(call: Call) -> None:
    for step in BEFORE_ANSWER:
        await step(call)
        if call.answered:
            return
    for step in AFTER_ANSWER:
        await step(call)
