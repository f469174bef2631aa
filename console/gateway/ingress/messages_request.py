"""Anthropic Messages API requests → the canonical call (Chat Completions' vocabulary).

`system` (a string or text blocks) → a system message; user and assistant turns of
content blocks → chat messages: `text` → text, `image` → an `image_url` part (a data
URL or the URL), `tool_use` → `tool_calls` (input as a JSON string), `tool_result` →
a `tool` message (before the turn's other content; its images join the turn's image
parts, since a tool message holds text only), `thinking`/`redacted_thinking` →
nothing (no canonical equivalent: only passthrough keeps them). `tools` → function
tools; `tool_choice` auto/any/tool/none → auto/required/named/none, and
`disable_parallel_tool_use` → `parallel_tool_calls: false`; `stop_sequences` → `stop`;
`metadata.user_id` → `user`, the other metadata keys stay `metadata` (Fleetdeck's
context keys among them). A stream asks for usage, which message_delta reports.

The client's body travels beside the canonical one (`providers.base.Native`), with its
metadata cut to `user_id`, the only key Anthropic takes, and its `anthropic-beta` header.
Anything the gateway would otherwise let through unchecked is refused here, with the
field it is about.
"""

from __future__ import annotations

from typing import Any

import orjson

from console.gateway import openai_api
from console.gateway.call import CanonicalRequest
from console.gateway.openai_api import ApiError
from console.gateway.wire.anthropic import CountTokensRequest, MessageRequest
from console.gateway.wire.check import Checked
from console.providers.base import Body, Native

PROTOCOL = "messages"
ROLES = ("user", "assistant")
USER_BLOCKS = frozenset({"text", "image", "tool_result"})
ASSISTANT_BLOCKS = frozenset({"text", "tool_use", "thinking", "redacted_thinking"})
KNOWN_BLOCKS = USER_BLOCKS | ASSISTANT_BLOCKS
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# The client's headers an Anthropic upstream gets with the client's own body: the betas it
# asked for (interleaved thinking, longer contexts, …) shape what that body may hold.
FORWARDED = ("anthropic-beta",)
CHECKED, COUNT_CHECKED = Checked(MessageRequest), Checked(CountTokensRequest)  # /openapi.json's models


def bad(message: str, param: str | None = None) -> ApiError:
    return openai_api.bad_request(f"{param}: {message}" if param else message, param=param)


def parse(raw: bytes, operation: str = "chat", *, count: bool = False) -> CanonicalRequest:
    """The canonical request for a Messages body (`count`: a count_tokens body, no max_tokens)."""
    body = openai_api.parse_body(raw)
    (COUNT_CHECKED if count else CHECKED).check(body)
    canonical = translate(body, count=count)
    native = {**body, "messages": _signed(body["messages"])}
    metadata = _anthropic_metadata(body.get("metadata"))
    if metadata is None:
        native.pop("metadata", None)
    else:
        native["metadata"] = metadata
    passthrough = Native.of_request(PROTOCOL, native, canonical, FORWARDED)
    return CanonicalRequest(operation, canonical, len(raw), passthrough)


def translate(body: Body, *, count: bool = False) -> Body:
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise bad("must be a non-empty string", "model")
    canonical: Body = {} if model is None else {"model": model}
    canonical["messages"] = [*_system(body.get("system")), *_messages(body.get("messages"))]
    if not count:
        canonical["max_tokens"] = _max_tokens(body.get("max_tokens"))
        _sampling(body, canonical)
    _tools(body, canonical)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise bad("must be an object", "metadata")
        rest = {k: v for k, v in metadata.items() if k != "user_id"}
        if metadata.get("user_id") is not None:
            canonical["user"] = str(metadata["user_id"])
        if rest:
            canonical["metadata"] = rest
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad("must be true or false", "stream")
    if stream and not count:
        canonical["stream"] = True
        canonical["stream_options"] = {"include_usage": True}
    return canonical


def _signed(messages: list[Body]) -> list[Body]:
    """The turns without thinking blocks that carry no signature: Fleetdeck renders an
    upstream's reasoning (or a cached answer's) that way, and Anthropic refuses them."""

    def unsigned(block: Any) -> bool:
        return isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature")

    if not any(isinstance(m.get("content"), list) and any(map(unsigned, m["content"])) for m in messages):
        return messages
    return [
        {**m, "content": [b for b in m["content"] if not unsigned(b)]}
        if isinstance(m.get("content"), list)
        else m
        for m in messages
    ]


def _anthropic_metadata(metadata: Any) -> Body | None:
    if isinstance(metadata, dict) and metadata.get("user_id") is not None:
        return {"user_id": metadata["user_id"]}
    return None


def _max_tokens(value: Any) -> int:
    if value is None:
        raise bad("field required", "max_tokens")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad("must be a positive integer", "max_tokens")
    return value


def _sampling(body: Body, canonical: Body) -> None:
    for name, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            raise bad(f"must be a number from {low:g} to {high:g}", name)
        canonical[name] = value
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise bad("must be a non-negative integer", "top_k")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad("must be an array of strings", "stop_sequences")
        if stops:
            canonical["stop"] = stops


def _system(system: Any) -> list[Body]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise bad("must be a string or an array of text blocks", "system")
    texts = []
    for index, block in enumerate(system):
        param = f"system[{index}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise bad("must be a text block", param)
        texts.append(_string(block.get("text"), f"{param}.text"))
    return [{"role": "system", "content": "\n\n".join(texts)}] if texts else []


def _messages(messages: Any) -> list[Body]:
    if not isinstance(messages, list) or not messages:
        raise bad("must be a non-empty array", "messages")
    translated: list[Body] = []
    offered: set[str] = set()  # tool_use ids of the previous assistant turn
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad("must be an object", param)
        role = message.get("role")
        if role not in ROLES:
            raise bad("role must be 'user' or 'assistant'", f"{param}.role")
        blocks = _blocks(message.get("content"), f"{param}.content")
        if role == "user":
            translated += _user_turn(blocks, param, offered)
            offered = set()
        else:
            turn, offered = _assistant_turn(blocks, param)
            translated.append(turn)
    return translated


def _blocks(content: Any, param: str) -> list[Body]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise bad("must be a string or a non-empty array of content blocks", param)
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad("must be a content block with a type", f"{param}[{index}]")
        if block["type"] not in KNOWN_BLOCKS:
            raise bad(
                f"unknown or unsupported content block type {block['type']!r} "
                f"(Fleetdeck takes {', '.join(sorted(KNOWN_BLOCKS))})",
                f"{param}[{index}].type",
            )
    return content


def _user_turn(blocks: list[Body], param: str, offered: set[str]) -> list[Body]:
    results: list[Body] = []
    parts: list[Body] = []
    for index, block in enumerate(blocks):
        where = f"{param}.content[{index}]"
        kind = block["type"]
        if kind not in USER_BLOCKS:
            raise bad(f"a user turn cannot hold a {kind!r} block", f"{where}.type")
        if kind == "tool_result":
            result, images = _tool_result(block, where, offered)
            results.append(result)
            parts += images  # a tool message holds text only: its images follow in the user turn
        elif kind == "text":
            parts.append({"type": "text", "text": _string(block.get("text"), f"{where}.text")})
        else:
            parts.append(_image(block, where))
    if parts and all(part["type"] == "text" for part in parts):
        return [*results, {"role": "user", "content": "".join(p["text"] for p in parts)}]
    return [*results, {"role": "user", "content": parts}] if parts else results


def _tool_result(block: Body, where: str, offered: set[str]) -> tuple[Body, list[Body]]:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise bad("must be a non-empty string", f"{where}.tool_use_id")
    if tool_use_id not in offered:
        raise bad(
            f"tool_result for {tool_use_id!r} has no tool_use block with that id in the previous "
            "assistant message",
            f"{where}.tool_use_id",
        )
    content = block.get("content")
    texts: list[str] = []
    images: list[Body] = []
    if content is None or isinstance(content, str):
        texts.append(content or "")
    elif isinstance(content, list):
        for i, part in enumerate(content):
            inner = f"{where}.content[{i}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(_string(part.get("text"), f"{inner}.text"))
            elif kind == "image":
                images.append(_image(part, inner))
            else:
                raise bad("tool results hold text and image blocks", f"{inner}.type")
    else:
        raise bad("must be a string or an array of text and image blocks", f"{where}.content")
    text = "".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _image(block: Body, where: str) -> Body:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise bad("an image needs a base64 source (media_type, data) or a url source", f"{where}.source")


def _assistant_turn(blocks: list[Body], param: str) -> tuple[Body, set[str]]:
    texts: list[str] = []
    calls: list[Body] = []
    for index, block in enumerate(blocks):
        where = f"{param}.content[{index}]"
        kind = block["type"]
        if kind not in ASSISTANT_BLOCKS:
            raise bad(f"an assistant turn cannot hold a {kind!r} block", f"{where}.type")
        if kind == "text":
            texts.append(_string(block.get("text"), f"{where}.text"))
        elif kind == "tool_use":
            calls.append(_tool_use(block, where))
    turn: Body = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        turn["tool_calls"] = calls
    return turn, {call["id"] for call in calls}


def _tool_use(block: Body, where: str) -> Body:
    tool_id, name, tool_input = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(tool_id, str) or not tool_id:
        raise bad("must be a non-empty string", f"{where}.id")
    if not isinstance(name, str) or not name:
        raise bad("must be a non-empty string", f"{where}.name")
    if not isinstance(tool_input, dict):
        raise bad("must be an object", f"{where}.input")
    arguments = orjson.dumps(tool_input).decode()
    return {"id": tool_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tools(body: Body, canonical: Body) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise bad("must be an array", "tools")
        canonical["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or (kind not in TOOL_CHOICES and kind != "tool"):
        raise bad("must be an object with type auto, any, tool or none", "tool_choice")
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or name not in {
            t["function"]["name"] for t in canonical.get("tools", ())
        }:
            raise bad("must name one of the request's tools", "tool_choice.name")
        canonical["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        canonical["tool_choice"] = TOOL_CHOICES[str(kind)]
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        canonical["parallel_tool_calls"] = False


def _tool(tool: Any, where: str) -> Body:
    if not isinstance(tool, dict):
        raise bad("must be an object", where)
    if tool.get("type") not in (None, "custom"):
        raise bad(
            f"tools of type {tool['type']!r} (Anthropic's server tools) are not supported: "
            "Fleetdeck polices the tool calls it can see, so it takes custom tools only",
            f"{where}.type",
        )
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise bad("must be a non-empty string", f"{where}.name")
    if not isinstance(schema, dict):
        raise bad("must be a JSON schema object", f"{where}.input_schema")
    function: Body = {"name": name, "parameters": schema}
    description = tool.get("description")
    if description is not None:
        function["description"] = _string(description, f"{where}.description")
    return {"type": "function", "function": function}


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise bad("must be a string", param)
    return value
