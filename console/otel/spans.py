"""What one recorded call says as a span and as metric points, after the OpenTelemetry
GenAI semantic conventions (the `gen_ai.*`, `server.*` and `error.type` names), with
Fleetdeck's own facts under `fleetdeck.*`. Pure: no SDK, no I/O.

The span is named "{gen_ai.operation.name} {gen_ai.request.model}". Its content
(`gen_ai.input.messages`, `gen_ai.output.messages`) is the stored, redacted request and
response, and only when the policy opts in (`otlp.capture_content`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes, server_attributes

from console.providers.base import Body, Provider
from console.store.trace import Eval, Trace

# The GenAI operations Fleetdeck records; other requests (model lists, outcomes) are no span.
OPERATIONS = frozenset({"chat", "text_completion", "embeddings", "execute_tool"})
SUCCEEDED = frozenset({"ok", "cached"})
WELL_KNOWN_HOSTS = {"api.openai.com": "openai", "api.anthropic.com": "anthropic"}
AttributeValue = str | bool | int | float | tuple[str, ...]
Attributes = dict[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class Server:
    """Where a configured provider is: what `gen_ai.provider.name` and `server.*` say."""

    kind: str  # local | openai_compat | anthropic
    host: str | None = None
    port: int | None = None


def server_of(provider: Provider) -> Server:
    base_url = provider.describe().get("base_url")
    if not isinstance(base_url, str):
        return Server(provider.kind)
    parts = urlsplit(base_url)
    return Server(provider.kind, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def called_provider(trace: Trace) -> str | None:
    """The provider that answered, else the last one tried (a failed call has no answer)."""
    if trace.provider:
        return trace.provider
    tried = [a for a in trace.attempt_log or () if isinstance(a, dict) and a.get("status") != "skipped"]
    provider = tried[-1].get("provider") if tried else None
    return provider if isinstance(provider, str) else None


def exported(trace: Trace) -> bool:
    return trace.operation in OPERATIONS


def span_name(trace: Trace) -> str:
    model = trace.request_model or trace.response_model
    return f"{trace.operation} {model}" if model else str(trace.operation)


def failed(trace: Trace) -> bool:
    return trace.status not in SUCCEEDED


def error_type(trace: Trace) -> str | None:
    return (trace.error_type or trace.status) if failed(trace) else None


def provider_name(trace: Trace, server: Server | None) -> str | None:
    """The convention's provider name: a well-known one when the upstream is one, else the
    configured provider's name (the convention allows custom values)."""
    configured = called_provider(trace)
    if server is None:
        return configured
    if server.kind == "anthropic":
        return "anthropic"
    return WELL_KNOWN_HOSTS.get(server.host or "", configured)


def response_model(trace: Trace) -> str | None:
    """The model that answered, by its upstream name (Fleetdeck's `provider/model` without the provider)."""
    model, prefix = trace.response_model, f"{trace.provider}/"
    return model[len(prefix) :] if model and trace.provider and model.startswith(prefix) else model


def common(trace: Trace, server: Server | None) -> Attributes:
    """What the span and every metric point share."""
    found: dict[str, AttributeValue | None] = {
        gen_ai.GEN_AI_OPERATION_NAME: trace.operation,
        gen_ai.GEN_AI_PROVIDER_NAME: provider_name(trace, server),
        gen_ai.GEN_AI_REQUEST_MODEL: trace.request_model,
        gen_ai.GEN_AI_RESPONSE_MODEL: response_model(trace),
        server_attributes.SERVER_ADDRESS: server.host if server else None,
        server_attributes.SERVER_PORT: server.port if server else None,
        error_attributes.ERROR_TYPE: error_type(trace),
    }
    return _present(found)


def span_attributes(
    trace: Trace, server: Server | None, request: Body | None, response: Body | None, capture_content: bool
) -> Attributes:
    found: dict[str, AttributeValue | None] = {
        **common(trace, server),
        gen_ai.GEN_AI_CONVERSATION_ID: trace.session_id,
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: trace.input_tokens,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: trace.output_tokens,
        gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: trace.cache_read_tokens or None,
        gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: trace.cache_write_tokens or None,
        gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: trace.reasoning_tokens or None,
        gen_ai.GEN_AI_RESPONSE_FINISH_REASONS: tuple(trace.finish_reasons) if trace.finish_reasons else None,
        gen_ai.GEN_AI_REQUEST_STREAM: trace.stream,
        gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: trace.ttft_ms / 1000
        if trace.stream and trace.ttft_ms
        else None,
        gen_ai.GEN_AI_RESPONSE_ID: _string(response, "id"),
        **request_parameters(request),
        **fleetdeck_attributes(trace),
    }
    if capture_content:
        found[gen_ai.GEN_AI_INPUT_MESSAGES] = _json(input_messages(request))
        found[gen_ai.GEN_AI_OUTPUT_MESSAGES] = _json(output_messages(response))
    return _present(found)


def first_chunk_s(trace: Trace) -> float | None:
    return trace.ttft_ms / 1000 if trace.stream and trace.ttft_ms is not None else None


# The sampling parameters of a request, by their convention names (never its content).
PARAMETERS = {
    gen_ai.GEN_AI_REQUEST_MAX_TOKENS: ("max_completion_tokens", "max_tokens"),
    gen_ai.GEN_AI_REQUEST_TEMPERATURE: ("temperature",),
    gen_ai.GEN_AI_REQUEST_TOP_P: ("top_p",),
    gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY: ("frequency_penalty",),
    gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY: ("presence_penalty",),
    gen_ai.GEN_AI_REQUEST_SEED: ("seed",),
    gen_ai.GEN_AI_REQUEST_CHOICE_COUNT: ("n",),
}


def request_parameters(request: Body | None) -> dict[str, AttributeValue | None]:
    found: dict[str, AttributeValue | None] = {}
    for name, keys in PARAMETERS.items():
        values = [request.get(key) for key in keys] if request else []
        found[name] = next((v for v in values if _number(v)), None)
    return found


def fleetdeck_attributes(trace: Trace) -> dict[str, AttributeValue | None]:
    return {
        "fleetdeck.request_id": trace.request_id,
        "fleetdeck.trace_id": trace.trace_id,
        "fleetdeck.parent_id": trace.parent_id,
        "fleetdeck.status": trace.status,
        "fleetdeck.route": trace.route,
        "fleetdeck.reason_code": trace.reason_code,
        "fleetdeck.cost_usd": trace.cost_usd,
        "fleetdeck.price_source": trace.price_source,
        "fleetdeck.environment": trace.environment,
        "fleetdeck.protocol": trace.protocol,
        "fleetdeck.provider": trace.provider,
        "fleetdeck.task_id": trace.task_id,
        "fleetdeck.workflow_id": trace.workflow_id,
        "fleetdeck.intent": trace.intent,
        "fleetdeck.tier": trace.tier,
        "fleetdeck.attempts": trace.attempts,
        "fleetdeck.cache": trace.cache,
        "fleetdeck.http_status": trace.http_status,
        "fleetdeck.ttft_ms": trace.ttft_ms,
        "fleetdeck.pii_redactions": trace.pii_redactions,
    }


def evaluation_attributes(verdict: Eval, capture_content: bool) -> Attributes:
    """A `gen_ai.evaluation.result` event's: the judge's verdict; its rationale (which may
    quote the call) only with content capture on."""
    found: dict[str, AttributeValue | None] = {
        gen_ai.GEN_AI_EVALUATION_NAME: verdict.rubric or verdict.component,
        gen_ai.GEN_AI_EVALUATION_SCORE_LABEL: verdict.verdict,
        gen_ai.GEN_AI_EVALUATION_SCORE_VALUE: verdict.score,
        gen_ai.GEN_AI_EVALUATION_EXPLANATION: verdict.rationale if capture_content else None,
        "fleetdeck.request_id": verdict.request_id,
        "fleetdeck.eval_id": verdict.eval_id,
        "fleetdeck.evaluator": verdict.evaluator,
        "fleetdeck.eval_component": verdict.component,
        "fleetdeck.judge_cost_usd": verdict.judge_cost_usd,
        "fleetdeck.judge_request_id": verdict.judge_request_id,
    }
    return _present(found)


def token_points(trace: Trace) -> list[tuple[int, str]]:
    """`gen_ai.client.token.usage` points: (count, gen_ai.token.type)."""
    points = [(trace.input_tokens, "input"), (trace.output_tokens, "output")]
    return [(count, kind) for count, kind in points if count is not None and not failed(trace)]


def input_messages(request: Body | None) -> Any:
    if not request:
        return None
    for key in ("messages", "prompt", "input"):
        if key in request:
            return request[key]
    return None


def output_messages(response: Body | None) -> Any:
    if not response:
        return None
    choices = response.get("choices")
    if not isinstance(choices, list):
        return None
    return [
        {
            "message": choice.get("message", {"content": choice.get("text")}),
            "finish_reason": choice.get("finish_reason"),
        }
        for choice in choices
        if isinstance(choice, dict)
    ]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string(body: Body | None, key: str) -> str | None:
    value = body.get(key) if body else None
    return value if isinstance(value, str) else None


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def _present(found: Mapping[str, AttributeValue | None]) -> Attributes:
    return {key: value for key, value in found.items() if value is not None}
