"""Step 4b, for a count_tokens call only: the request's input tokens for the model its route
would answer with, which answers the call (no model runs, nothing is reserved or spent).

A provider that can count (`count_tokens(model, body)`: the local model's own tokenizer
and chat template, an Anthropic upstream's count_tokens endpoint) counts; for the others
(OpenAI-compatible APIs have no such endpoint) the count is an estimate, four characters
a token, and says so in `X-Fleetdeck-Token-Count` and the trace's price_source.
"""

from __future__ import annotations

import math

import orjson

from console.gateway.call import Call
from console.providers.base import REQUEST_SETTINGS, Body, Provider

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # the chat template's markers around each message


async def count_tokens(call: Call) -> None:
    if call.operation != "count_tokens":
        return
    assert call.decision is not None
    methods: dict[str, str] = {}

    async def attempt(provider: Provider, model: str, seconds_left: float) -> int:
        body = {**call.outbound(provider, call.body), "model": model}
        counter = getattr(provider, "count_tokens", None)
        methods[provider.name] = "estimate" if counter is None else "counted"
        return estimate(body) if counter is None else int(await counter(model, body))

    served = await call.services.executor.run(call.decision.plan, call.attempts, attempt)
    call.note_served(served)
    method = methods[served.target.provider]
    trace = call.trace
    trace.input_tokens, trace.output_tokens, trace.cost_usd = served.value, 0, 0.0
    trace.price_source = "token count" if method == "counted" else "token count (estimated)"
    trace.status, trace.http_status = "ok", 200
    call.reply_headers["X-Fleetdeck-Token-Count"] = method
    call.answer = {"input_tokens": served.value}


def estimate(body: Body) -> int:
    """About four characters a token, over what the request says (messages, tools, …)."""
    said = {key: value for key, value in body.items() if key not in REQUEST_SETTINGS}
    messages = body.get("messages")
    overhead = TOKENS_PER_MESSAGE * len(messages) if isinstance(messages, list) else 0
    return math.ceil(len(orjson.dumps(said)) / CHARS_PER_TOKEN) + overhead
