"""The chat family's request check: the hand-written checks it had until the wire models (the
former `openai_surface.check_request`, kept here to compare) vs the pydantic model that is now
both the check and the OpenAPI schema. Prints µs per body and the ratio; asserts nothing.

Run: `PYTHONPATH=. .venv/bin/python bench/wire_check.py`.
"""

from __future__ import annotations

import timeit
from typing import Any

import orjson

from console.gateway import openai_api
from console.gateway.ingress.chat import CHAT
from console.gateway.openai_api import parse_body
from console.providers.base import Body

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def check_request(operation: str, field: str, body: Body) -> None:
    """Checks the fields the gateway itself relies on; the provider checks the rest."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise openai_api.bad_request("'model' must be a string", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise openai_api.bad_request("'stream' must be true or false", param="stream")
    if stream and operation == "embeddings":
        raise openai_api.bad_request("embeddings cannot be streamed", param="stream")
    if field not in body:
        raise openai_api.bad_request(f"'{field}' is required", param=field)
    if operation == "chat":
        _check_messages(body["messages"])
    elif not isinstance(body[field], str | list) or not body[field]:
        raise openai_api.bad_request(f"'{field}' must be a non-empty string or list", param=field)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise openai_api.bad_request(f"'{name}' must be a positive integer", param=name)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise openai_api.bad_request(f"'{name}' must be a number", param=name)
    _check_object(body, "metadata")
    _check_object(body, "stream_options")
    _check_object(body, "response_format")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise openai_api.bad_request("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise openai_api.bad_request(f"{param} must be an object", param=param)
        role = message.get("role")
        if role not in ROLES:
            raise openai_api.bad_request(
                f"{param}.role must be one of {', '.join(sorted(ROLES))}", param=f"{param}.role"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise openai_api.bad_request(
                f"{param}.content must be a string or an array", param=f"{param}.content"
            )


def _check_object(body: Body, name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise openai_api.bad_request(f"'{name}' must be an object", param=name)


SMALL = {
    "model": "route:support",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}],
    "max_tokens": 64,
    "temperature": 0.2,
    "metadata": {"workflow": "x"},
}
LONG = {
    "model": "route:support",
    "messages": [{"role": "user" if i % 2 else "assistant", "content": "x" * 200} for i in range(40)],
    "max_tokens": 64,
}


def per_call_us(check: Any, body: Body, number: int = 20_000) -> float:
    return min(timeit.repeat(lambda: check(body), number=number, repeat=5)) / number * 1e6


def main() -> None:
    print(f"{'body':<10} {'hand µs':>9} {'model µs':>9} {'ratio':>6}   (parse + check: hand, model, ratio)")
    for name, body in (("2 turns", SMALL), ("40 turns", LONG)):
        raw = orjson.dumps(body)
        hand = per_call_us(lambda b: check_request("chat", "messages", b), body)
        model = per_call_us(CHAT.wire.check, body)
        hand_all = per_call_us(lambda r: check_request("chat", "messages", parse_body(r)), raw)
        model_all = per_call_us(lambda r: CHAT.wire.check(parse_body(r)), raw)
        print(
            f"{name:<10} {hand:>9.2f} {model:>9.2f} {model / hand:>6.2f}   "
            f"({hand_all:.2f}, {model_all:.2f}, {model_all / hand_all:.2f})"
        )


if __name__ == "__main__":
    main()
