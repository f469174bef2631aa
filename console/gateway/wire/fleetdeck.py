"""Fleetdeck's own operations: outcomes, handoffs, `/healthz` and the loopback admin API's actions.

Each admin action's body is checked with its model before the Engine's handler runs; the
handler checks what depends on the store (a route that exists, a key's name that is free).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import Field, with_config
from typing_extensions import TypedDict

from console.gateway.wire.openai import WIRE, NonEmptyText, PositiveInt

Text = str | None


@with_config(WIRE)
class OutcomeRequest(TypedDict):
    """`POST /v1/outcomes`: how a task ended, for cost per outcome."""

    task_id: NonEmptyText
    status: Literal["resolved", "failed", "abandoned"]
    workflow_id: NotRequired[str | None]
    value: NotRequired[Annotated[float | None, Field(description="what the outcome was worth")]]
    reporter: NotRequired[Any]


@with_config(WIRE)
class OutcomeRecorded(TypedDict):
    task_id: str
    status: str
    recorded: Literal[True]


@with_config(WIRE)
class HandoffRequest(TypedDict):
    """`POST /v1/handoffs`: a payload handed to the next agent under a contract of the policy."""

    contract: NonEmptyText
    payload: Annotated[
        Any, Field(description="the document handed on; checked against the contract's schema")
    ]
    task_id: NotRequired[Annotated[str, Field(description="default: the X-Fleetdeck-Task header")]]
    provenance: NotRequired[
        Annotated[
            dict[str, list[str]], Field(description="field name → request ids of the calls it came from")
        ]
    ]


@with_config(WIRE)
class Handoff(TypedDict):
    """A handoff and its state: accepted (200), held by its gate (202); refused is a 422 error."""

    id: str
    object: Literal["handoff"]
    contract: str
    task_id: str
    status: Literal["accepted", "held", "refused"]
    problem: str | None
    provenance: dict[str, list[str]]
    payload_sha256: str
    gate: dict[str, Any]


@with_config(WIRE)
class Health(TypedDict):
    status: Literal["ok"]
    providers: dict[str, Any]
    breakers: dict[str, str]


# --- the admin API (loopback, admin token) --------------------------------------------------


@with_config(WIRE)
class QueryRequest(TypedDict, total=False):
    """`{"sql": …}` (one read-only statement) or `{"name": …, "params": {…}}` (a named query)."""

    sql: str
    name: str
    params: dict[str, Any] | None


@with_config(WIRE)
class KeysRequest(TypedDict, total=False):
    action: Required[Literal["create", "revoke", "list"]]
    name: Text
    environment: Text
    daily_cap: float | None
    monthly_cap: float | None
    routes: list[str] | None
    requests_per_minute: PositiveInt | None
    tokens_per_minute: PositiveInt | None
    concurrent: PositiveInt | None
    actor: Text


@with_config(WIRE)
class OversightRequest(TypedDict, total=False):
    action: Required[Literal["stop", "resume", "override", "list"]]
    route: Text
    request_id: Text
    verdict: Text
    component: Text
    reason: Text
    actor: Text


@with_config(WIRE)
class ApprovalsRequest(TypedDict, total=False):
    action: Required[Literal["list", "approve", "deny"]]
    approval_id: Text
    reason: Text
    actor: Text


@with_config(WIRE)
class PromptsRequest(TypedDict, total=False):
    action: Required[Literal["add", "pin", "list", "get"]]
    name: Text
    template: Text
    version: Text
    lineage: Annotated[
        dict[str, Any] | None,
        Field(description="where an added version came from (parent, score, reasoning); audited"),
    ]
    actor: Text


@with_config(WIRE)
class PriceItem(TypedDict):
    model: NonEmptyText
    input_tokens: Annotated[int, Field(ge=0)]
    output_tokens: Annotated[int, Field(ge=0)]


@with_config(WIRE)
class PriceRequest(TypedDict, total=False):
    """The worst case of calls not yet made, as the reserve step prices them."""

    items: Required[list[PriceItem]]
    actor: Text


@with_config(WIRE)
class EvalRunRequest(TypedDict, total=False):
    run_id: Required[str]
    golden_set: Required[str]
    started_at: Required[str]
    finished_at: Required[str]
    cases: Required[int]
    passed: Required[int]
    score: Required[float]
    gate_passed: Required[bool]
    report: Required[str | dict[str, Any]]
    prompt_name: Text
    prompt_version: Text
    route: Text
    actor: Text


@with_config(WIRE)
class DriftRequest(TypedDict, total=False):
    as_of: Annotated[Text, Field(description="an ISO date or date-time; now by default")]
    workflow: Text


@with_config(WIRE)
class RetentionRequest(TypedDict, total=False):
    dry_run: bool | None
    actor: Text


@with_config(WIRE)
class Empty(TypedDict, total=False):
    """No fields needed."""

    actor: Text


ADMIN_REQUESTS: dict[str, type[Any]] = {
    "query": QueryRequest,
    "keys": KeysRequest,
    "audit_verify": Empty,
    "oversight": OversightRequest,
    "approvals": ApprovalsRequest,
    "prompts": PromptsRequest,
    "eval_runs": EvalRunRequest,
    "drift": DriftRequest,
    "retention": RetentionRequest,
    "mcp": Empty,
    "price": PriceRequest,
}
"""Every admin action's request model, by action (the Engine's handlers have the same names)."""
