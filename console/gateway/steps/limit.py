"""Step 3½: the rate limits of the call's key, environment and route (console.gateway.limits):
admitted under all of them, or refused 429 with the headers OpenAI's clients retry on."""

from __future__ import annotations

from console.gateway import budget
from console.gateway.call import Call
from console.gateway.limits import LimitsUnavailable, Throttled, limits_for
from console.gateway.openai_api import ApiError
from console.policy import DEFAULT_MAX_TOKENS

BYTES_PER_TOKEN = 4  # the usual estimate for a prompt before a tokenizer has seen it


async def apply_rate_limits(call: Call) -> None:
    limits = limits_for(call.key, call.route, call.services.policy)
    if not limits:
        return
    tokens = _token_estimate(call) if any(limit.tokens is not None for limit in limits) else 0
    try:
        admitted = await call.services.limiter.acquire(limits, tokens)
    except LimitsUnavailable as exc:
        call.trace.status, call.trace.reason_code = "error", "limits-unavailable"
        call.trace.error_type = "limits_unavailable"
        raise ApiError(503, str(exc), type_="api_error", code="limits_unavailable") from None
    if isinstance(admitted, Throttled):
        call.trace.status, call.trace.reason_code = "rate_limited", "rate-limited"
        raise ApiError(
            429, admitted.message(), type_=admitted.kind, code="rate_limit_exceeded", headers=admitted.headers
        )
    call.lease = admitted
    call.reply_headers.update(admitted.headers)


def _token_estimate(call: Call) -> int:
    """The prompt's estimate plus every output token the call may use."""
    assert call.request is not None
    route = call.route
    output = call.request.max_tokens() or (route.default_max_tokens if route else DEFAULT_MAX_TOKENS)
    return budget.prompt_token_bound(call.body) // BYTES_PER_TOKEN + output
