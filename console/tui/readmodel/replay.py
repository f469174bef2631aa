"""A stored trace as something to send again: a `curl` command, or a Playground chat.

Built from the redacted request the store keeps (the canonical Chat Completions body), so
what is copied never holds what the PII guard removed; the key is left to the shell
(`$FLEETDECK_KEY`), never written out.
"""

from __future__ import annotations

import shlex
from typing import Any

import orjson

ENDPOINTS = {
    "chat": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "embeddings": "/v1/embeddings",
}
CONTEXT_HEADERS = (
    ("workflow_id", "X-Fleetdeck-Workflow"),
    ("task_id", "X-Fleetdeck-Task"),
    ("session_id", "X-Fleetdeck-Session"),
)


def curl_command(row: dict[str, Any], request: Any, base_url: str | None) -> str | None:
    """The call again as `curl`, or None when the trace kept no request or is not a model call."""
    path = ENDPOINTS.get(str(row.get("operation")))
    if path is None or not isinstance(request, dict):
        return None
    body = {**request, "model": request.get("model") or row.get("request_model")}
    headers = ["Content-Type: application/json"]
    headers += [f"{header}: {row[column]}" for column, header in CONTEXT_HEADERS if row.get(column)]
    url = f"{base_url or 'http://127.0.0.1:8787'}{path}"
    quoted = " ".join(f"-H {shlex.quote(header)}" for header in headers)
    # The key's header in double quotes: the shell fills in $FLEETDECK_KEY.
    key = '-H "Authorization: Bearer $FLEETDECK_KEY"'
    return f"curl -sS {shlex.quote(url)} {key} {quoted} -d {shlex.quote(orjson.dumps(body).decode())}"


def playground_chat(row: dict[str, Any], request: Any) -> tuple[str, list[dict[str, str]], str] | None:
    """(model, the conversation before the last user turn, that turn's text) for the Playground,
    or None when the trace is not a chat with a text last turn."""
    if row.get("operation") != "chat" or not isinstance(request, dict):
        return None
    found = [_text_message(m) for m in request.get("messages") or []]
    turns = [m for m in found if m is not None]
    if not turns or len(turns) < len(found) or turns[-1]["role"] != "user":
        return None
    route = row.get("route")
    model = f"route:{route}" if route else str(request.get("model") or row.get("request_model") or "")
    return model, turns[:-1], turns[-1]["content"]


def _text_message(message: Any) -> dict[str, str] | None:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        return None
    content = message.get("content")
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "\n".join(t for t in texts if isinstance(t, str)) if texts else None
    return {"role": message["role"], "content": content} if isinstance(content, str) else None
