"""The OpenAPI document of `fleetdeck serve`'s whole HTTP surface, generated from the wire models
the handlers validate with (console/gateway/wire/) and MCP's own JSON-RPC models.

Served at `GET /openapi.json`; the same bytes are kept in the repository as docs/openapi.json
(tests/test_openapi.py fails when they differ). Regenerate with
`python -m console.gateway.openapi docs/openapi.json`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import mcp_types
import orjson
from pydantic import TypeAdapter

from console import __version__
from console.gateway.wire import anthropic, fleetdeck, openai

REF = "#/components/schemas/{model}"
JSON = "application/json"
SSE = "text/event-stream"
ARROW = "application/vnd.apache.arrow.stream"
VIRTUAL_KEY: list[dict[str, list[str]]] = [{"virtualKey": []}]
MESSAGES_KEY: list[dict[str, list[str]]] = [{"virtualKey": []}, {"anthropicKey": []}]
ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    request: type[Any] | None = None
    answer: type[Any] | None = None
    error: type[Any] = openai.ErrorEnvelope
    security: list[dict[str, list[str]]] = field(default_factory=lambda: VIRTUAL_KEY)
    streams: bool = False  # a `stream: true` request is answered with server-sent events
    answer_type: str = JSON
    parameters: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, Any] = field(default_factory=dict)


RESPONSE_ID = {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}
PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
    {"name": "after", "in": "query", "schema": {"type": "string"}},
]
STORED = {"response_id": "$response.body#/id"}
RESPONSE_LINKS = {
    "RetrieveResponse": {"operationId": "retrieveResponse", "parameters": STORED},
    "ListInputItems": {"operationId": "listInputItems", "parameters": STORED},
    "DeleteResponse": {"operationId": "deleteResponse", "parameters": STORED},
    "ContinueResponse": {
        "operationId": "createResponse",
        "requestBody": {"input": "and then?", "previous_response_id": "$response.body#/id"},
    },
}

OPERATIONS = (
    Operation(
        "post",
        "/v1/chat/completions",
        "createChatCompletion",
        "Chat Completions",
        "openai",
        openai.ChatCompletionRequest,
        openai.ChatCompletion,
        streams=True,
    ),
    Operation(
        "post",
        "/v1/completions",
        "createCompletion",
        "Completions (legacy)",
        "openai",
        openai.CompletionRequest,
        openai.Completion,
        streams=True,
    ),
    Operation(
        "post",
        "/v1/embeddings",
        "createEmbedding",
        "Embeddings",
        "openai",
        openai.EmbeddingRequest,
        openai.EmbeddingList,
    ),
    Operation(
        "post",
        "/v1/responses",
        "createResponse",
        "Responses API: create (previous_response_id continues)",
        "openai",
        openai.ResponseCreateRequest,
        openai.Response,
        streams=True,
        links=RESPONSE_LINKS,
    ),
    Operation(
        "get",
        "/v1/responses/{response_id}",
        "retrieveResponse",
        "A stored response of the caller's key",
        "openai",
        answer=openai.Response,
        parameters=[RESPONSE_ID],
    ),
    Operation(
        "delete",
        "/v1/responses/{response_id}",
        "deleteResponse",
        "Delete a stored response",
        "openai",
        answer=openai.ResponseDeleted,
        parameters=[RESPONSE_ID],
    ),
    Operation(
        "get",
        "/v1/responses/{response_id}/input_items",
        "listInputItems",
        "A stored response's input items, a page at a time",
        "openai",
        answer=openai.InputItemList,
        parameters=[RESPONSE_ID, *PAGE],
    ),
    Operation(
        "post",
        "/v1/messages",
        "createMessage",
        "Anthropic Messages API",
        "anthropic",
        anthropic.MessageRequest,
        anthropic.Message,
        anthropic.AnthropicErrorEnvelope,
        MESSAGES_KEY,
        streams=True,
    ),
    Operation(
        "post",
        "/v1/messages/count_tokens",
        "countMessageTokens",
        "Anthropic count_tokens",
        "anthropic",
        anthropic.CountTokensRequest,
        anthropic.TokenCount,
        anthropic.AnthropicErrorEnvelope,
        MESSAGES_KEY,
    ),
    Operation(
        "get",
        "/v1/models",
        "listModels",
        "The models and routes a request may name",
        "openai",
        answer=openai.ModelList,
    ),
    Operation(
        "post",
        "/v1/outcomes",
        "recordOutcome",
        "How a task ended (cost per outcome)",
        "fleetdeck",
        fleetdeck.OutcomeRequest,
        fleetdeck.OutcomeRecorded,
    ),
    Operation(
        "post",
        "/v1/handoffs",
        "submitHandoff",
        "A payload handed to the next agent under a contract: schema, provenance, gate",
        "fleetdeck",
        fleetdeck.HandoffRequest,
        fleetdeck.Handoff,
        links={
            "ReadHandoff": {"operationId": "readHandoff", "parameters": {"handoff_id": "$response.body#/id"}}
        },
    ),
    Operation(
        "get",
        "/v1/handoffs/{handoff_id}",
        "readHandoff",
        "A handoff's state",
        "fleetdeck",
        answer=fleetdeck.Handoff,
        parameters=[
            {"name": "handoff_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "wait",
                "in": "query",
                "required": False,
                "description": "answer once the gate decided, or after this many seconds",
                "schema": {"type": "number", "minimum": 0, "maximum": 60},
            },
        ],
    ),
    Operation(
        "get",
        "/healthz",
        "health",
        "Providers, breakers, queues",
        "fleetdeck",
        answer=fleetdeck.Health,
        security=[],
    ),
    Operation("get", "/openapi.json", "openapi", "This document", "fleetdeck", security=[]),
)


def admin_operations() -> tuple[Operation, ...]:
    """One operation per admin action: loopback clients holding the admin token only."""
    return tuple(
        Operation(
            "post",
            f"/_admin/{action}",
            f"admin_{action}",
            f"Admin: {action}",
            "admin",
            model,
            answer_type=ARROW if action == "query" else JSON,
            security=ADMIN,
        )
        for action, model in fleetdeck.ADMIN_REQUESTS.items()
    )


def _mcp_path(schemas: dict[str, Any]) -> dict[str, Any]:
    """`/mcp`: MCP's Streamable HTTP (stateless, JSON answers); JSON-RPC errors, 401 without a key."""
    request = _schema(mcp_types.JSONRPCRequest, schemas)
    notification = _schema(mcp_types.JSONRPCNotification, schemas)
    answer = _schema(mcp_types.JSONRPCResponse, schemas)
    error = _schema(mcp_types.JSONRPCError, schemas)
    body = {"oneOf": [request, notification]}
    return {
        "post": {
            "operationId": "mcp",
            "summary": "MCP gateway: tools/list and tools/call of the policy's MCP servers "
            "(present when the policy names MCP servers)",
            "tags": ["mcp"],
            "security": VIRTUAL_KEY,
            "requestBody": {"required": True, "content": {JSON: {"schema": body}}},
            "responses": {
                "200": {"description": "a JSON-RPC answer", "content": {JSON: {"schema": answer}}},
                "202": {"description": "a notification, accepted"},
                "default": {"description": "a JSON-RPC error", "content": {JSON: {"schema": error}}},
            },
        }
    }


def _schema(model: type[Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to the model's schema, added (with the schemas it uses) to `schemas`."""
    found = TypeAdapter(model).json_schema(ref_template=REF)
    for name, schema in [*found.pop("$defs", {}).items(), (model.__name__, found)]:
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two wire models are named {name}: rename one")
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {JSON: {"schema": _schema(op.answer, schemas)}} if op.answer else {}
    if op.answer_type != JSON:
        answers = {op.answer_type: {"schema": {"type": "string", "format": "binary"}}}
    elif op.answer is None:
        answers = {JSON: {"schema": {"type": "object"}}}
    if op.streams:
        answers[SSE] = {"schema": {"description": "server-sent events, with stream: true"}}
    ok: dict[str, Any] = {"description": "the answer", "content": answers}
    if op.links:
        ok["links"] = op.links
    error = {
        "description": "the protocol's error envelope",
        "content": {JSON: {"schema": _schema(op.error, schemas)}},
    }
    spec: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": op.security,
        "responses": {"200": ok, "default": error},
    }
    if op.parameters:
        spec["parameters"] = op.parameters
    if op.request is not None:
        body = {JSON: {"schema": _schema(op.request, schemas)}}
        spec["requestBody"] = {"required": True, "content": body}
    return spec


@cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for op in (*OPERATIONS, *admin_operations()):
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
    paths["/mcp"] = _mcp_path(schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Fleetdeck gateway",
            "version": __version__,
            "description": "The HTTP surface of `fleetdeck serve`: OpenAI's and Anthropic's wire "
            "protocols, MCP, outcomes, health and the loopback admin API. Every request to /v1/ "
            "and /mcp leaves exactly one trace.",
        },
        "servers": [{"url": "http://127.0.0.1:8787"}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "virtualKey": {"type": "http", "scheme": "bearer", "description": "a Fleetdeck virtual key"},
                "anthropicKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token in admin.json (0600) in the data dir; loopback only",
                },
            },
        },
    }


@cache
def document_bytes() -> bytes:
    """The document as served and as kept in docs/openapi.json."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_bytes(document_bytes())
