"""The records the recorder takes: one Trace per request, its redacted Payload, and the
responses the Responses API stores.

Field names and meanings follow the `traces` and `payloads` tables (DESIGN.md).
Timestamps are naive UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from console.clock import new_request_id, utc_now

JSONValue = Any

# The MCP requests that call no tool, each traced as operation `mcp:<method>`; any other
# method is `mcp:other`.
MCP_METHODS = ("initialize", "ping", "tools/list", "notifications/initialized", "notifications/cancelled")
# Every `traces.operation` Fleetdeck writes (the importer refuses others, as a typo).
OPERATIONS = (
    "chat",  # Chat Completions, the Responses API, Anthropic's Messages
    "text_completion",
    "embeddings",
    "count_tokens",
    "execute_tool",  # an MCP tools/call
    "models",
    "outcome",
    "handoff",
    "handoff_get",
    "response_get",
    "response_delete",
    "response_input_items",
    "unknown",  # a path the gateway does not serve
    *(f"mcp:{method}" for method in (*MCP_METHODS, "other")),
)


@dataclass(slots=True, kw_only=True)
class Trace:
    request_id: str = field(default_factory=new_request_id)
    ts_start: datetime = field(default_factory=utc_now)
    status: str = "ok"
    trace_id: str | None = None
    parent_id: str | None = None
    ts_end: datetime | None = None
    environment: str | None = None
    key_id: str | None = None
    workflow_id: str | None = None
    intent: str | None = None
    tier: str | None = None
    user_role: str | None = None
    tenant: str | None = None
    task_id: str | None = None
    session_id: str | None = None
    step: int | None = None
    prompt_name: str | None = None
    prompt_version: str | None = None
    operation: str | None = None
    protocol: str | None = None
    route: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    provider: str | None = None
    reason_code: str | None = None
    attempts: int | None = None
    attempt_log: JSONValue = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    context_tokens: int | None = None
    cost_usd: float | None = None
    price_source: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    error_type: str | None = None
    http_status: int | None = None
    finish_reasons: list[str] | None = None
    stream: bool | None = None
    cache: str | None = None
    cache_similarity: float | None = None
    guard_results: JSONValue = None
    pii_redactions: int | None = None
    injection_score: float | None = None
    schema_valid: bool | None = None
    tool_calls: JSONValue = None
    retrieval_doc_ids: list[str] | None = None
    request_hash: str | None = None
    payload_ref: str | None = None
    cache_saved_usd: float | None = None
    cache_entry: str | None = None
    cache_shadow: str | None = None


@dataclass(slots=True, kw_only=True)
class Payload:
    payload_ref: str
    request_id: str
    ts: datetime = field(default_factory=utc_now)
    request: JSONValue = None
    response: JSONValue = None


@dataclass(slots=True, kw_only=True)
class Outcome:
    """What became of a task: the denominator of cost per outcome."""

    task_id: str
    status: str  # resolved | failed | abandoned
    workflow_id: str | None = None
    value: float | None = None
    ts: datetime = field(default_factory=utc_now)
    reporter: str | None = None


@dataclass(slots=True, kw_only=True)
class Eval:
    """A verdict on one call: the judge's, a golden set's or a human's (an override)."""

    eval_id: str
    request_id: str
    evaluator: str  # judge:<model> | human:<name> | golden:<set>
    verdict: str  # correct | partial | incorrect
    rubric: str | None = None
    component: str | None = None  # retrieval | tool_selection | policy_compliance | answer
    score: float | None = None
    rationale: str | None = None
    judge_cost_usd: float | None = None
    judge_request_id: str | None = None
    ts: datetime = field(default_factory=utc_now)


TRACE_FIELDS = tuple(f.name for f in fields(Trace))


@dataclass(slots=True, kw_only=True)
class StoredResponse:
    """A Responses API response kept for `previous_response_id` and retrieval (redacted)."""

    response_id: str
    request_id: str
    key_id: str | None
    created_at: datetime = field(default_factory=utc_now)
    previous_response_id: str | None = None
    input_items: JSONValue = None
    response: JSONValue = None
