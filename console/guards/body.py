"""Walks OpenAI request and response bodies: redacts their text, lists what injection scoring reads.

Bodies are never mutated: every container on a path that changed is rebuilt, and unchanged
sub-objects are shared with the input (treat both as read-only).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import orjson

from console.guards.injection import DEFAULT_THRESHOLD, InjectionResult, Signal, injection_score
from console.guards.pii import redact

Body = dict[str, Any]
Counts = dict[str, int]

# Request fields holding text the user or the app sends, beside messages.
_REQUEST_TEXT_FIELDS = ("prompt", "input", "suffix", "instructions", "user")
# Keys of a content part that hold text (chat parts, Responses-style parts, refusals).
_PART_TEXT_KEYS = ("text", "input_text", "output_text", "refusal")
_MESSAGE_TEXT_KEYS = ("content", "refusal", "reasoning_content", "reasoning")


# Chat clients resend the whole conversation every turn: the same strings come back again and
# again, so results are cached by text (bounded; the functions are pure).
_CACHE_SIZE = 4096
_CACHE_MAX_CHARS = 64 * 1024


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _redact_cached(text: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    redacted, counts = redact(text)
    return redacted, tuple(counts.items())


def _redact(text: str) -> tuple[str, Counts]:
    if len(text) > _CACHE_MAX_CHARS:
        return redact(text)
    redacted, counts = _redact_cached(text)
    return redacted, dict(counts)


_score_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(injection_score)


def _merge(into: Counts, more: Counts) -> None:
    for kind, n in more.items():
        into[kind] = into.get(kind, 0) + n


class _Redactor:
    def __init__(self) -> None:
        self.counts: Counts = {}

    def text(self, value: str) -> str:
        redacted, counts = _redact(value)
        if counts:
            _merge(self.counts, counts)
        return redacted

    def content(self, value: Any) -> Any:
        """A message content / prompt / input: a string, or a list of strings, parts or tokens."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.content_item(item) for item in value]
        return value

    def content_item(self, item: Any) -> Any:
        if isinstance(item, str):
            return self.text(item)
        if isinstance(item, dict):
            new = item
            for key in _PART_TEXT_KEYS:
                if isinstance(item.get(key), str):
                    if new is item:
                        new = dict(item)
                    new[key] = self.text(item[key])
            return new
        return item  # token ids, None

    def json_arguments(self, value: Any) -> Any:
        """Tool-call arguments: a JSON string whose string values are redacted, kept valid JSON."""
        if not isinstance(value, str):
            return self.json_value(value, "")
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return self.text(value)  # partial arguments of a stream chunk, or not JSON at all
        before = dict(self.counts)
        redacted = self.json_value(parsed, "")
        if self.counts == before:
            return value
        return orjson.dumps(redacted).decode()

    def json_value(self, value: Any, key: str) -> Any:
        if isinstance(value, str):
            if key:
                # The key is context ("ssn": "536904399"); a finding touching it falls back.
                prefix = f"{key}: "
                redacted, counts = _redact(prefix + value)
                if counts and redacted.startswith(prefix):
                    _merge(self.counts, counts)
                    return redacted[len(prefix) :]
            return self.text(value)
        if isinstance(value, list):
            return [self.json_value(item, key) for item in value]
        if isinstance(value, dict):
            return {k: self.json_value(v, str(k)) for k, v in value.items()}
        return value

    def tool_calls(self, calls: Any) -> Any:
        if not isinstance(calls, list):
            return calls
        out = []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and "arguments" in function:
                arguments = self.json_arguments(function["arguments"])
                out.append({**call, "function": {**function, "arguments": arguments}})
            else:
                out.append(call)
        return out

    def message(self, message: Any) -> Any:
        if not isinstance(message, dict):
            return message
        new = dict(message)
        for key in _MESSAGE_TEXT_KEYS:
            if key in message:
                new[key] = self.content(message[key])
        if "tool_calls" in message:
            new["tool_calls"] = self.tool_calls(message["tool_calls"])
        function_call = message.get("function_call")
        if isinstance(function_call, dict) and "arguments" in function_call:
            new["function_call"] = {
                **function_call,
                "arguments": self.json_arguments(function_call["arguments"]),
            }
        return new

    def choice(self, choice: Any) -> Any:
        if not isinstance(choice, dict):
            return choice
        new = dict(choice)
        for key in ("message", "delta"):
            if key in choice:
                new[key] = self.message(choice[key])
        if isinstance(choice.get("text"), str):
            new["text"] = self.text(choice["text"])
        return new


def redact_body(body: Body) -> tuple[Body, Counts]:
    """A copy of an OpenAI request, response or stream-chunk body with all PII redacted.

    Covers chat (``messages[].content`` as a string or content parts, tool-call and
    function-call arguments), completions (``prompt``, ``suffix``), embeddings (``input``),
    the ``user`` field, and responses (``choices[].message``, ``choices[].delta``,
    ``choices[].text``). Returns the new body and the number of redactions by kind.
    """
    redactor = _Redactor()
    out = dict(body)
    messages = body.get("messages")
    if isinstance(messages, list):
        out["messages"] = [redactor.message(message) for message in messages]
    for key in _REQUEST_TEXT_FIELDS:
        if key in body:
            out[key] = redactor.content(body[key])
    choices = body.get("choices")
    if isinstance(choices, list):
        out["choices"] = [redactor.choice(choice) for choice in choices]
    return out, redactor.counts


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for item in content:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict):
                texts.extend(item[key] for key in _PART_TEXT_KEYS if isinstance(item.get(key), str))
        return "\n".join(texts)
    return ""


def request_texts(body: Body) -> Iterator[tuple[str, str, str]]:
    """``(where, source, text)`` for every piece of untrusted text in a request.

    ``source`` is ``"user"`` for what the end user typed (user messages, ``prompt``) and
    ``"retrieved"`` for what came back from tools or retrieval (``tool`` / ``function``
    messages). System, developer and assistant messages are the application's own and are
    not scored; neither is embeddings ``input``, which no model follows.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            if role == "user":
                source = "user"
            elif role in ("tool", "function"):
                source = "retrieved"
            else:
                continue
            text = _content_text(message.get("content"))
            if text:
                yield f"messages[{index}]", source, text
    prompt = body.get("prompt")
    if isinstance(prompt, str) and prompt:
        yield "prompt", "user", prompt
    elif isinstance(prompt, list):
        for index, item in enumerate(prompt):
            if isinstance(item, str) and item:
                yield f"prompt[{index}]", "user", item


def score_texts(body: Body) -> Iterator[tuple[str, str, str, InjectionResult]]:
    """``(where, source, text, result)``: the patterns' score of every text ``request_texts`` reads."""
    for where, source, text in request_texts(body):
        cached = len(text) <= _CACHE_MAX_CHARS
        yield where, source, text, _score_cached(text, source) if cached else injection_score(text, source)


def score_request(body: Body, threshold: float = DEFAULT_THRESHOLD) -> InjectionResult:
    """The injection score of a request: the highest score of its user and retrieved texts.

    Scores are not added up across messages (a long, benign conversation does not drift
    towards a block). The result's signals are those of every text scoring at least half the
    threshold, each with ``where`` naming its message (``messages[3]``, ``prompt``).
    ``score, signals = score_request(body)`` unpacks it.
    """
    best = 0.0
    signals: list[Signal] = []
    for where, _source, _text, result in score_texts(body):
        best = max(best, result.score)
        if result.score >= threshold / 2:
            signals.extend(Signal(s.name, s.weight, s.evidence, where) for s in result.signals)
    signals.sort(key=lambda s: -s.weight)
    return InjectionResult(best, tuple(signals))
