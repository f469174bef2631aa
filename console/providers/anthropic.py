"""Anthropic's Messages API behind OpenAI shapes, translated both ways.

Requests: system/developer messages → `system`; user, assistant and tool messages →
alternating turns of content blocks (tool calls → `tool_use`, tool results →
`tool_result`, images → `image`); function tools → tools with `input_schema`;
`tool_choice` auto/none/required/named; stop → `stop_sequences`; `max_tokens` is
required by Anthropic and defaults to `default_max_tokens`.

Responses: text and `tool_use` blocks → `message.content` and `tool_calls` (arguments
as a JSON string), thinking → `reasoning_content`; stop reasons → finish reasons; usage
→ OpenAI usage, where `prompt_tokens` counts every input token (uncached + cache read +
cache write), `prompt_tokens_details.cached_tokens` the cache reads and
`.cache_write_tokens` the cache writes, and `completion_tokens_details.reasoning_tokens`
the thinking tokens.

Passthrough: a request that arrived in the Messages API carries the client's own body
(`providers.base.Native`); when the gateway hands it over, that body is sent as it is
(model, max_tokens and stream set by the gateway), so thinking blocks, their signatures
and `cache_control` reach Anthropic untouched, and the upstream's own message (or its
own stream events) travels back beside the canonical answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import orjson

from console.providers.base import NATIVE, Body, ErrorType, Native, ProviderError
from console.providers.openai_compat import HttpProvider, drain
from console.providers.sse import SSEDecoder, SSEEvent

ANTHROPIC_VERSION = "2023-06-01"
PROTOCOL = "messages"  # the ingress protocol this provider speaks natively
# What Anthropic's count_tokens endpoint takes of a Messages request.
COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICES: dict[str, Body] = {
    "auto": {"type": "auto"},
    "none": {"type": "none"},
    "required": {"type": "any"},
}


def _bad_request(message: str) -> ProviderError:
    return ProviderError(ErrorType.bad_request, f"anthropic: {message}")


# --- OpenAI request → Anthropic request -------------------------------------------------------------


def to_anthropic(model: str, body: Body, default_max_tokens: int = 1024) -> Body:
    """The Messages API request for an OpenAI chat request (without `stream`)."""
    if (body.get("n") or 1) > 1:
        raise _bad_request("Anthropic returns one choice per request (n must be 1)")
    system, messages = _messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    request: Body = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        request["system"] = system
    if body.get("temperature") is not None:
        request["temperature"] = min(float(body["temperature"]), 1.0)  # OpenAI allows up to 2
    for key in ("top_p", "top_k"):
        if body.get(key) is not None:
            request[key] = body[key]
    stops = _stop_sequences(body.get("stop"))
    if stops:
        request["stop_sequences"] = stops
    if body.get("user"):
        request["metadata"] = {"user_id": str(body["user"])}
    if body.get("tools"):
        request["tools"] = [_tool(tool) for tool in body["tools"]]
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            request["tool_choice"] = choice
    return request


def _stop_sequences(stop: Any) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    return [s for s in stops if isinstance(s, str) and s.strip()]  # Anthropic rejects blank sequences


def _messages(raw: Any) -> tuple[str, list[Body]]:
    if not isinstance(raw, list) or not raw:
        raise _bad_request("messages must be a non-empty list")
    system: list[str] = []
    turns: list[Body] = []
    for message in raw:
        if not isinstance(message, dict):
            raise _bad_request("every message must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
            continue
        anthropic_role, blocks = _blocks(role, message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"].extend(blocks)  # Anthropic wants alternating turns
        else:
            turns.append({"role": anthropic_role, "content": blocks})
    return "\n\n".join(part for part in system if part), turns


def _blocks(role: Any, message: Body) -> tuple[str, list[Body]]:
    if role == "user":
        return "user", _user_blocks(message.get("content"))
    if role == "assistant":
        return "assistant", _assistant_blocks(message)
    if role == "tool":
        return "user", [_tool_result(message)]
    raise _bad_request(f"unsupported message role {role!r}")


def _text(content: Any) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(
            part.get("text") or ""
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    raise _bad_request("message content must be a string or a list of parts")


def _user_blocks(content: Any) -> list[Body]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad_request("message content must be a string or a list of parts")
    blocks: list[Body] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url")))
        else:
            raise _bad_request(f"content parts of type {kind!r} are not supported for Anthropic")
    return blocks


def _image(image_url: Any) -> Body:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise _bad_request("image_url needs a url")
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, sep, data = url.partition(",")
    if url.startswith("data:") and sep and header.endswith(";base64"):
        media_type = header[len("data:") : -len(";base64")]
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    raise _bad_request("images must be an http(s) URL or a base64 data: URL")


def _assistant_blocks(message: Body) -> list[Body]:
    text = _text(message.get("content"))
    blocks: list[Body] = [{"type": "text", "text": text}] if text else []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _arguments(function.get("arguments")),
            }
        )
    return blocks


def _arguments(arguments: Any) -> Body:
    if not arguments:
        return {}
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad_request("tool call arguments must be a JSON object")
    return parsed


def _tool_result(message: Body) -> Body:
    if not message.get("tool_call_id"):
        raise _bad_request("a tool message needs tool_call_id")
    result: Body = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
    text = _text(message.get("content"))
    if text:
        result["content"] = text
    return result


def _tool(tool: Any) -> Body:
    if (
        not isinstance(tool, dict)
        or tool.get("type") != "function"
        or not isinstance(tool.get("function"), dict)
    ):
        raise _bad_request("only function tools are supported for Anthropic")
    function = tool["function"]
    translated: Body = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        translated["description"] = function["description"]
    return translated


def _tool_choice(choice: Any, parallel: Any) -> Body | None:
    translated: Body | None
    if choice is None:
        translated = {"type": "auto"} if parallel is False else None
    elif isinstance(choice, str) and choice in _TOOL_CHOICES:
        translated = dict(_TOOL_CHOICES[choice])
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        translated = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise _bad_request(f"unsupported tool_choice {choice!r}")
    if translated and parallel is False and translated["type"] != "none":
        translated["disable_parallel_tool_use"] = True
    return translated


# --- Anthropic response → OpenAI response -----------------------------------------------------------


def openai_usage(usage: Mapping[str, Any]) -> Body:
    uncached = int(usage.get("input_tokens") or 0)
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_write = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = uncached + cache_read + cache_write
    completion = int(usage.get("output_tokens") or 0)
    thinking = int((usage.get("output_tokens_details") or {}).get("thinking_tokens") or 0)
    translated: Body = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "cache_write_tokens": cache_write},
    }
    if thinking:
        translated["completion_tokens_details"] = {"reasoning_tokens": thinking}
    return translated


def from_anthropic(message: Any, model: str) -> Body:
    """The OpenAI `chat.completion` for an Anthropic `message`; raises bad_response on anything else."""
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ProviderError(
            ErrorType.bad_response, "anthropic: the upstream answered JSON that is not a message"
        )
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[Body] = []
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(_tool_call(block))
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        # redacted_thinking (and server tool blocks) have no OpenAI equivalent
    reply: Body = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if thinking:
        reply["reasoning_content"] = "".join(thinking)
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {
        "id": message.get("id") or "",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": FINISH_REASONS.get(message.get("stop_reason") or "", "stop"),
                "logprobs": None,
            }
        ],
        "usage": openai_usage(message.get("usage") or {}),
    }


def _tool_call(block: Body) -> Body:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


class StreamTranslator:
    """Anthropic stream events → OpenAI `chat.completion.chunk` dicts, one event at a time."""

    def __init__(self, model: str, native: bool = False) -> None:
        self.id = ""
        self.model = model
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.finished = False
        self.native = native  # every chunk carries the upstream event it came from
        self._tool_index: dict[int, int] = {}  # Anthropic content-block index → OpenAI tool_calls index

    def handle(self, event: Any) -> Body | None:
        chunk = self._handle(event)
        if not self.native:
            return chunk
        # Passthrough: events with no canonical meaning (ping, block stops, signatures) still
        # travel, in a chunk without choices; the relay passes those to a client that asked for usage.
        chunk = chunk if chunk is not None else {**self._envelope(), "choices": []}
        chunk[NATIVE] = Native(PROTOCOL, [event])
        return chunk

    def _handle(self, event: Any) -> Body | None:
        if not isinstance(event, dict):
            raise ProviderError(ErrorType.bad_response, "anthropic: a stream event that is not an object")
        kind = event.get("type")
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "message_start":
            return self._message_start(event.get("message") or {})
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            self.finished = True
            usage = openai_usage(self.usage)
            return {**self._envelope(), "choices": [], "usage": usage}
        return None  # ping, content_block_stop, and event types added later; the provider handles `error`

    def _envelope(self) -> Body:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def _chunk(self, delta: Body, finish_reason: str | None = None) -> Body:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**self._envelope(), "choices": [choice]}

    def _message_start(self, message: Body) -> Body:
        self.id = message.get("id") or self.id
        self.model = message.get("model") or self.model
        self.usage.update(message.get("usage") or {})
        return self._chunk({"role": "assistant", "content": ""})

    def _block_start(self, event: Body) -> Body | None:
        block = event.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return self._chunk({"content": block["text"]})
        if block.get("type") != "tool_use":
            return None
        index = self._tool_index[event.get("index", -1)] = len(self._tool_index)
        call = {"index": index, "id": block.get("id"), "type": "function"}
        call["function"] = {"name": block.get("name"), "arguments": ""}
        return self._chunk({"tool_calls": [call]})

    def _delta(self, event: Body) -> Body | None:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._chunk({"content": delta.get("text") or ""})
        if kind == "input_json_delta":
            index = self._tool_index.get(event.get("index", -1), 0)
            call = {"index": index, "function": {"arguments": delta.get("partial_json") or ""}}
            return self._chunk({"tool_calls": [call]})
        if kind == "thinking_delta":
            return self._chunk({"reasoning_content": delta.get("thinking") or ""})
        return None  # signature deltas

    def _message_delta(self, event: Body) -> Body:
        self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        stop_reason = (event.get("delta") or {}).get("stop_reason") or ""
        return self._chunk({}, FINISH_REASONS.get(stop_reason, "stop"))


# --- the provider -------------------------------------------------------------------------------------


class AnthropicProvider(HttpProvider):
    """Claude models through the Messages API at `base_url` (without `/v1`)."""

    kind = "anthropic"
    native_protocols = frozenset({PROTOCOL})

    def __init__(
        self,
        name: str,
        base_url: str = "https://api.anthropic.com",
        api_key: str | None = None,
        models: list[str] | None = None,
        timeout_s: float = 600.0,
        max_connections: int = 100,
        *,
        keepalive_s: float = 4.0,
        default_max_tokens: int = 1024,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        headers = {"anthropic-version": ANTHROPIC_VERSION, **(extra_headers or {})}
        if api_key:
            headers["x-api-key"] = api_key
        base = base_url.rstrip("/")
        super().__init__(
            name,
            base.removesuffix("/v1"),
            headers=headers,
            secrets=[api_key],
            models=models,
            timeout_s=timeout_s,
            max_connections=max_connections,
            keepalive_s=keepalive_s,
        )
        self._default_max_tokens = default_max_tokens
        self._messages_url = self.url("/v1/messages")
        self._count_url = self.url("/v1/messages/count_tokens")

    def _request(self, model: str, body: Body) -> tuple[Body, Native | None]:
        """The Messages request for `body`, and the client's own when it is that (passthrough)."""
        native = body.get(NATIVE)
        if not isinstance(native, Native) or native.protocol != PROTOCOL:
            return to_anthropic(model, body, self._default_max_tokens), None
        request = {key: value for key, value in native.body.items() if key != "stream"}
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        return {**request, "model": model, "max_tokens": max_tokens or request.get("max_tokens")}, native

    async def chat(self, model: str, body: Body) -> Body:
        request, native = self._request(model, body)
        message = await self.post_json(self._messages_url, request, _headers(native))
        answer = from_anthropic(message, model)
        if native is not None:
            answer[NATIVE] = Native.of_answer(PROTOCOL, message, answer)
        return answer

    async def chat_stream(self, model: str, body: Body) -> AsyncGenerator[Body, None]:
        request, native = self._request(model, body)
        translator = StreamTranslator(model, native is not None)
        decoder = SSEDecoder()
        streaming = {**request, "stream": True}
        async with self.open_stream(self._messages_url, streaming, _headers(native)) as response:
            chunks = response.aiter_bytes()
            async for raw in chunks:
                for chunk in self._translate(translator, decoder.feed(raw)):
                    yield chunk
                if translator.finished:
                    await drain(chunks)
                    return
            for chunk in self._translate(translator, decoder.flush()):
                yield chunk
        if not translator.finished:
            raise ProviderError(ErrorType.connection, f"{self.name}: the stream ended before message_stop")

    async def count_tokens(self, model: str, body: Body) -> int:
        """Anthropic's own count (`/v1/messages/count_tokens`) of the request's input tokens."""
        request, native = self._request(model, body)
        counting = {k: request[k] for k in COUNT_FIELDS if k in request}
        counted = await self.post_json(self._count_url, counting, _headers(native))
        tokens = counted.get("input_tokens") if isinstance(counted, dict) else None
        if not isinstance(tokens, int):
            raise self.bad_response("a token count without input_tokens")
        return tokens

    async def completion(self, model: str, body: Body) -> Body:
        chat = await self.chat(model, _completion_as_chat(body))
        choice = chat["choices"][0]
        return {
            "id": chat["id"],
            "object": "text_completion",
            "created": chat["created"],
            "model": chat["model"],
            "choices": [
                {
                    "text": choice["message"]["content"] or "",
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": choice["finish_reason"],
                }
            ],
            "usage": chat["usage"],
        }

    async def embeddings(self, model: str, body: Body) -> Body:
        raise ProviderError(ErrorType.bad_request, "Anthropic has no embeddings API")

    def _translate(self, translator: StreamTranslator, events: list[SSEEvent]) -> Iterator[Body]:
        for event in events:
            chunk = translator.handle(self._event(event.data))
            if chunk is not None:
                yield chunk
            if translator.finished:
                return

    def _event(self, data: bytes) -> Any:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            preview = data[:80].decode("utf-8", "replace")
            raise self.bad_response(f"a stream event that is not JSON: {preview!r}") from None
        if isinstance(event, dict) and event.get("type") == "error":
            raise self.body_error(event)
        return event


def _headers(native: Native | None) -> dict[str, str] | None:
    """The client's own headers that go with its own body (its anthropic-beta)."""
    return dict(native.headers) if native is not None and native.headers else None


def _completion_as_chat(body: Body) -> Body:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _bad_request("the prompt must be one string")
    chat: Body = {
        key: body[key] for key in ("max_tokens", "temperature", "top_p", "stop", "user") if key in body
    }
    return {**chat, "messages": [{"role": "user", "content": prompt}]}
