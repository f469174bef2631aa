"""A Responses API request (`POST /v1/responses`) in the canonical form, Chat Completions'.

`input` (a string, or message, `function_call` and `function_call_output` items) and
`instructions` become `messages`: instructions a system message first, function calls
the assistant's `tool_calls` (consecutive ones in one message), their outputs `tool`
messages; `reasoning` items are dropped (no chat upstream takes them back). Flat function
`tools` become chat tools, `text.format` the `response_format`, `max_output_tokens` the
`max_tokens`, `reasoning.effort` the `reasoning_effort`; `temperature`, `top_p`,
`metadata`, `parallel_tool_calls`, `tool_choice` and `user` carry over.

`previous_response_id` continues a conversation stored for the caller's key: once the
call is authenticated, its input items and output go before the new input.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from console.gateway import openai_api
from console.gateway.call import Call, CanonicalRequest
from console.gateway.openai_api import ApiError
from console.providers.base import Body

ROLES = frozenset({"user", "assistant", "system", "developer"})
ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning")
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
FORMATS = frozenset({"text", "json_object", "json_schema"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})
UNSUPPORTED = {
    "background": "background responses are not supported by Fleetdeck",
    "conversation": "conversations are not supported by Fleetdeck; use previous_response_id",
    "prompt": "stored prompts of OpenAI's are not supported; use X-Fleetdeck-Prompt",
}
ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


@dataclass(slots=True)
class ResponsesRequest(CanonicalRequest):
    """The canonical request, with what the Responses API's answer echoes and stores."""

    wire: Body = field(default_factory=dict)  # the request's own fields, as sent (no input)
    instructions: str | None = None
    items: list[Body] = field(default_factory=list)  # the input as items, each with an id
    previous_response_id: str | None = None
    store: bool = True
    conversation: list[Body] = field(default_factory=list)  # the stored items it continues

    @property
    def input_items(self) -> list[Body]:
        """Every item the model is given: the stored conversation first."""
        return [*self.conversation, *self.items]

    async def resume(self, call: Call) -> None:
        if self.previous_response_id is None:
            return
        responses = call.services.responses
        key_id = call.key.key_id if call.key else None
        found = None
        if responses is not None:
            found = await asyncio.to_thread(responses.find, self.previous_response_id, key_id)
        if found is None:
            raise ApiError(
                400,
                f"Previous response with id {self.previous_response_id!r} not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        self.conversation = [*found.input_items, *found.response.get("output", [])]
        self.size += len(orjson.dumps(self.conversation))
        self.body["messages"] = canonical_messages(
            self.instructions, self.input_items, len(self.conversation)
        )


def parse_request(body: Body, size: int) -> ResponsesRequest:
    """The canonical request for a Responses API body, or the ApiError that says what is wrong."""
    for name, reason in UNSUPPORTED.items():
        if body.get(name):
            raise openai_api.bad_request(reason, param=name)
    instructions = _optional(body, "instructions", str, "a string")
    previous = _optional(body, "previous_response_id", str, "a string")
    store = _optional(body, "store", bool, "true or false")
    items = input_items(body.get("input"))
    canonical = _canonical_body(body)
    request = ResponsesRequest(
        "chat",
        canonical,
        size,
        wire={k: v for k, v in body.items() if k != "input"},
        instructions=instructions,
        items=items,
        previous_response_id=previous,
        store=store is not False,
    )
    if previous is None:  # else once the stored conversation is in (`resume`)
        canonical["messages"] = canonical_messages(instructions, items)
    return request


# --- input items ------------------------------------------------------------------------------


def input_items(raw: Any) -> list[Body]:
    """`input` as a list of checked items, each with the id it is listed under."""
    if isinstance(raw, str) and raw:
        return [_with_id({"type": "message", "role": "user", "content": [_text_part("user", raw)]})]
    if not isinstance(raw, list) or not raw:
        raise openai_api.bad_request("'input' must be a non-empty string or array of items", param="input")
    return [_with_id(_item(item, f"input[{index}]")) for index, item in enumerate(raw)]


def _item(item: Any, param: str) -> Body:
    if not isinstance(item, dict):
        raise openai_api.bad_request(f"{param} must be an object", param=param)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind not in ITEM_TYPES:
        raise openai_api.bad_request(
            f"{param}.type {kind!r} is not supported; Fleetdeck takes {', '.join(ITEM_TYPES)} items",
            param=f"{param}.type",
        )
    if kind == "message":
        return _message_item(item, param)
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            _required_string(item, name, param, allow_empty=name == "arguments")
        return {**item, "type": kind}
    if kind == "function_call_output":
        _required_string(item, "call_id", param)
        output = item.get("output")
        if not isinstance(output, str | list):
            raise openai_api.bad_request(
                f"{param}.output must be a string or an array of parts", param=f"{param}.output"
            )
        return {**item, "type": kind}
    return {**item, "type": kind}  # reasoning: kept in the stored input, never sent on


def _message_item(item: Body, param: str) -> Body:
    role = item.get("role")
    if role not in ROLES:
        raise openai_api.bad_request(
            f"{param}.role must be one of {', '.join(sorted(ROLES))}", param=f"{param}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        parts = [_text_part(role, content)]
    elif isinstance(content, list):
        parts = [_part(part, f"{param}.content[{n}]") for n, part in enumerate(content)]
    else:
        raise openai_api.bad_request(
            f"{param}.content must be a string or an array of parts", param=f"{param}.content"
        )
    return {**item, "type": "message", "role": role, "content": parts}


def _part(part: Any, param: str) -> Body:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in TEXT_PARTS:
        _required_string(part, "text", param, allow_empty=True)
        return dict(part)
    if kind == "refusal":
        _required_string(part, "refusal", param, allow_empty=True)
        return dict(part)
    if kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise openai_api.bad_request(
                f"{param}.image_url must be a URL (file_id images are not supported)",
                param=f"{param}.image_url",
            )
        return dict(part)
    raise openai_api.bad_request(
        f"{param}.type {kind!r} is not supported; Fleetdeck takes input_text, output_text, "
        "refusal and input_image parts",
        param=f"{param}.type",
    )


def _text_part(role: str, text: str) -> Body:
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": "input_text", "text": text}


def _with_id(item: Body) -> Body:
    if isinstance(item.get("id"), str) and item["id"]:
        return item
    return {"id": f"{ID_PREFIXES[item['type']]}_{secrets.token_hex(16)}", **item}


def _required_string(item: Body, name: str, param: str, allow_empty: bool = False) -> None:
    value = item.get(name)
    if not isinstance(value, str) or not (value or allow_empty):
        raise openai_api.bad_request(f"{param}.{name} must be a non-empty string", param=f"{param}.{name}")


# --- items → messages -------------------------------------------------------------------------


def canonical_messages(instructions: str | None, items: list[Body], stored: int = 0) -> list[Body]:
    """Chat messages for the items (the first `stored` of them from a stored conversation);
    a function_call_output must follow its function_call."""
    messages: list[Body] = [{"role": "system", "content": instructions}] if instructions else []
    called: set[str] = set()
    for index, item in enumerate(items):
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": _chat_content(item["content"])})
        elif kind == "function_call":
            called.add(item["call_id"])
            _add_tool_call(messages, item)
        elif kind == "function_call_output":
            if item["call_id"] not in called:
                raise openai_api.bad_request(
                    f"No tool call found for function call output with call_id {item['call_id']!r}.",
                    param=f"input[{index - stored}].call_id",
                )
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output(item)})
    return messages


def _add_tool_call(messages: list[Body], item: Body) -> None:
    tool_call = {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(tool_call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})


def _chat_content(parts: list[Body]) -> str | list[Body]:
    """One string when the parts are all text (every chat template takes that), else chat parts."""
    if all(part["type"] != "input_image" for part in parts):
        return "".join(str(part.get("text") or part.get("refusal") or "") for part in parts)
    chat: list[Body] = []
    for part in parts:
        if part["type"] == "input_image":
            image = {"url": part["image_url"], **({"detail": part["detail"]} if "detail" in part else {})}
            chat.append({"type": "image_url", "image_url": image})
        else:
            chat.append({"type": "text", "text": str(part.get("text") or part.get("refusal") or "")})
    return chat


def _output(item: Body) -> str:
    output = item["output"]
    if isinstance(output, str):
        return output
    return "".join(str(p.get("text") or "") for p in output if isinstance(p, dict))


# --- the other fields -------------------------------------------------------------------------


def _canonical_body(body: Body) -> Body:
    canonical: Body = {}
    model = _optional(body, "model", str, "a string")
    if model is not None:
        canonical["model"] = model
    if _optional(body, "stream", bool, "true or false"):
        canonical["stream"] = True
        canonical["stream_options"] = {"include_usage": True}  # the final event carries usage
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise openai_api.bad_request(f"'{name}' must be a number", param=name)
            canonical[name] = value
    limit = body.get("max_output_tokens")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise openai_api.bad_request(
                "'max_output_tokens' must be a positive integer", param="max_output_tokens"
            )
        canonical["max_tokens"] = limit
    metadata = _optional(body, "metadata", dict, "an object")
    if metadata:
        canonical["metadata"] = dict(metadata)  # the context step takes Fleetdeck's keys out of it
    user = _optional(body, "user", str, "a string")
    if user:
        canonical["user"] = user
    parallel = _optional(body, "parallel_tool_calls", bool, "true or false")
    if parallel is not None:
        canonical["parallel_tool_calls"] = parallel
    reasoning = _optional(body, "reasoning", dict, "an object")
    if reasoning and isinstance(reasoning.get("effort"), str):
        canonical["reasoning_effort"] = reasoning["effort"]
    return _with_tools_and_format(body, canonical)


def _with_tools_and_format(body: Body, canonical: Body) -> Body:
    tools = _tools(body.get("tools"))
    if tools:
        canonical["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"))
    if choice is not None:
        canonical["tool_choice"] = choice
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        canonical["response_format"] = response_format
    return canonical


def _optional(body: Body, name: str, kind: type, described: str) -> Any:
    value = body.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise openai_api.bad_request(f"'{name}' must be {described}", param=name)
    return value


def _tools(raw: Any) -> list[Body]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise openai_api.bad_request("'tools' must be an array", param="tools")
    tools = []
    for index, tool in enumerate(raw):
        param = f"tools[{index}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else type(tool).__name__
            raise openai_api.bad_request(
                f"{param}: only function tools are supported, not {kind!r}", param=f"{param}.type"
            )
        _required_string(tool, "name", param)
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise openai_api.bad_request(f"{param}.parameters must be an object", param=f"{param}.parameters")
        function: Body = {"name": tool["name"]}
        for name in ("description", "parameters", "strict"):
            if tool.get(name) is not None:
                function[name] = tool[name]
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(raw: Any) -> str | Body | None:
    if raw is None or (isinstance(raw, str) and raw in TOOL_CHOICES):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("name"), str):
        return {"type": "function", "function": {"name": raw["name"]}}
    raise openai_api.bad_request(
        '\'tool_choice\' must be auto, none, required or {"type": "function", "name": …}',
        param="tool_choice",
    )


def _response_format(text: Any) -> Body | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(text, dict) or (fmt is not None and not isinstance(fmt, dict)):
        raise openai_api.bad_request("'text' must be an object with an object 'format'", param="text")
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind not in FORMATS:
        raise openai_api.bad_request(
            f"text.format.type must be one of {', '.join(sorted(FORMATS))}", param="text.format.type"
        )
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if not isinstance(fmt.get("schema"), dict):
        raise openai_api.bad_request(
            "text.format.schema must be a JSON schema object", param="text.format.schema"
        )
    spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
    for name in ("description", "strict"):
        if fmt.get(name) is not None:
            spec[name] = fmt[name]
    return {"type": "json_schema", "json_schema": spec}
