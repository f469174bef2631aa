"""The canonical answer (a chat.completion body) as a Responses API `response` object.

The assistant's text is one `message` item with an `output_text` part (a refusal, a
`refusal` part); each tool call a `function_call` item whose `call_id` is the tool call's
id. `usage` counts as OpenAI's Responses usage does: `input_tokens` (cached included) with
`input_tokens_details.cached_tokens`, `output_tokens` with
`output_tokens_details.reasoning_tokens`. A `length` finish is status `incomplete`
(`max_output_tokens`), a content filter's likewise (`content_filter`).
"""

from __future__ import annotations

import time
from typing import Any

from console.gateway.ingress.responses_request import ResponsesRequest
from console.providers.base import Body

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(request_id: str) -> str:
    return f"resp_{request_id}"


def message_item(request_id: str, text: str, status: str = "completed") -> Body:
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [text_part(text)],
    }


def text_part(text: str) -> Body:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(request_id: str, index: int, tool_call: Body, status: str = "completed") -> Body:
    function = tool_call.get("function") or {}
    return {
        "id": f"fc_{request_id}_{index}",
        "type": "function_call",
        "status": status,
        "call_id": str(tool_call.get("id") or f"call_{request_id}_{index}"),
        "name": str(function.get("name") or ""),
        "arguments": str(function.get("arguments") or ""),
    }


def output_items(request_id: str, answer: Body) -> tuple[list[Body], str | None]:
    """The answer's output items, and its finish reason."""
    choices = answer.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    finish = choice.get("finish_reason")
    status = "incomplete" if finish in INCOMPLETE else "completed"
    items: list[Body] = []
    if message.get("refusal"):
        refusal = {"type": "refusal", "refusal": str(message["refusal"])}
        items.append({**message_item(request_id, "", status), "content": [refusal]})
    elif message.get("content"):
        items.append(message_item(request_id, _text(message["content"]), status))
    for index, tool_call in enumerate(message.get("tool_calls") or ()):
        items.append(function_call_item(request_id, index, tool_call))
    return items, finish


def usage(chat_usage: Body | None) -> Body | None:
    if not chat_usage:
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = int((chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": int(chat_usage.get("total_tokens") or prompt + completion),
    }


def response_object(
    request: ResponsesRequest,
    request_id: str,
    *,
    model: str | None,
    output: list[Body],
    usage: Body | None,
    finish: str | None = None,
    status: str | None = None,
    error: Body | None = None,
    created_at: float | None = None,
) -> Body:
    """The `response` object; status follows the finish reason unless given."""
    wire = request.wire
    reason = INCOMPLETE.get(finish or "")
    status = status or ("incomplete" if reason else "completed")
    text: Body = wire["text"] if isinstance(wire.get("text"), dict) else {}
    return {
        "id": response_id(request_id),
        "object": "response",
        "created_at": created_at if created_at is not None else time.time(),
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": {"reason": reason} if reason and status == "incomplete" else None,
        "instructions": request.instructions,
        "max_output_tokens": wire.get("max_output_tokens"),
        "model": model or wire.get("model") or "",
        "output": output,
        "parallel_tool_calls": wire.get("parallel_tool_calls", True),
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": _effort(wire.get("reasoning")), "summary": None},
        "store": request.store,
        "temperature": wire.get("temperature", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": wire.get("tool_choice") or "auto",
        "tools": [_tool(tool) for tool in wire.get("tools") or ()],
        "top_p": wire.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": wire.get("user"),
        "metadata": wire.get("metadata") or {},
    }


def completed(request: ResponsesRequest, request_id: str, answer: Body) -> Body:
    """The response object for a JSON answer."""
    output, finish = output_items(request_id, answer)
    model = answer.get("model") if isinstance(answer.get("model"), str) else None
    return response_object(
        request, request_id, model=model, output=output, usage=usage(answer.get("usage")), finish=finish
    )


def _effort(reasoning: Any) -> Any:
    return reasoning.get("effort") if isinstance(reasoning, dict) else None


def _tool(tool: Any) -> Any:
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"parameters": None, "strict": None, "description": None, **tool}
    return tool


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""
