"""What every provider offers the executor, and the errors it may raise.

The gateway speaks OpenAI's shapes end to end: a provider takes an OpenAI request
body (with `model` already resolved to the provider's own model name) and returns
OpenAI response bodies, or yields OpenAI `chat.completion.chunk` dicts when
streaming. Providers that speak another protocol (Anthropic) translate both ways.

A provider that speaks a client's own wire protocol (Anthropic's Messages API for a
request that arrived as one) may be handed the request as the client sent it, beside
the canonical body, and hand its own answer back beside the canonical one: see `Native`.

Providers do not retry, time out or fall back: the executor does all of that, by
cancelling the provider's coroutine. A provider must therefore release what it holds
(an upstream connection, a local generation) when it is cancelled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import orjson

Body = dict[str, Any]
NATIVE = "_native"  # the key of a `Native` in a canonical request, answer or stream chunk
# What steps may set on a request without changing what it says (reserve sets max_tokens,
# the execute step stream_options, the context step takes its keys out of metadata).
REQUEST_SETTINGS = frozenset(
    {"model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "metadata"}
)
# Headers every upstream HTTP request of the call being served carries, whatever its protocol
# (the W3C `traceparent` naming Fleetdeck's span): set by the gateway once per call, read by
# the HTTP providers as they send.
UPSTREAM_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar(
    "fleetdeck_upstream_headers", default=None
)


class ErrorType(StrEnum):
    """The error taxonomy of DESIGN.md, plus the two ways an upstream can misbehave."""

    timeout = "timeout"
    rate_limited = "rate_limited"
    server_error = "server_error"
    bad_request = "bad_request"
    context_length = "context_length"
    content_filter = "content_filter"
    auth = "auth"
    not_found = "not_found"
    connection = "connection"  # refused, reset, closed mid-response
    bad_response = "bad_response"  # the upstream answered something that is not its protocol

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE


RETRYABLE = frozenset(
    {
        ErrorType.timeout,
        ErrorType.rate_limited,
        ErrorType.server_error,
        ErrorType.connection,
        ErrorType.bad_response,
    }
)


class ProviderError(Exception):
    """A failed provider call, classified so the executor knows whether to retry or fall back.

    `status` is the upstream's HTTP status when there was one; `retry_after_s` comes
    from a `Retry-After` header. The message must never contain a secret.
    """

    def __init__(
        self,
        error_type: ErrorType,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # input tokens written to the provider's prompt cache

    @classmethod
    def from_openai(cls, usage: Body | None) -> Usage:
        """Read an OpenAI `usage` object (chat, completions or embeddings).

        `prompt_tokens` counts every input token; `prompt_tokens_details.cached_tokens` the
        cache reads among them and `.cache_write_tokens` (OpenRouter's name) the cache writes."""
        if not usage:
            return cls()
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cache_read_tokens=int(prompt_details.get("cached_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
            cache_write_tokens=int(prompt_details.get("cache_write_tokens") or 0),
        )


def _view(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def request_view(body: Body) -> bytes:
    """What a canonical request says, without the settings steps may add."""
    return _view({key: value for key, value in body.items() if key not in REQUEST_SETTINGS})


@dataclass(frozen=True, slots=True)
class Native:
    """A request, an answer or stream events in one wire protocol, carried beside the canonical
    form so that a provider speaking the same protocol passes content through without loss
    (thinking blocks and their signatures, cache_control) that the canonical form cannot hold.

    `basis` is the canonical form it was translated to or from. The canonical form is what
    the steps govern: when a step has rewritten it (PII redacted, a prompt applied, tool
    calls withheld), `basis` no longer matches and the native form must not be used.
    """

    protocol: str  # an ingress protocol: "messages"
    body: Any  # a request or answer body, or a list of stream events
    basis: bytes = b""
    forward: tuple[str, ...] = ()  # client headers that belong to the request (e.g. anthropic-beta)
    headers: tuple[tuple[str, str], ...] = ()  # their values, once the gateway has handed them over

    @classmethod
    def of_request(cls, protocol: str, body: Body, canonical: Body, forward: tuple[str, ...] = ()) -> Native:
        return cls(protocol, body, request_view(canonical), forward)

    def with_headers(self, client_headers: Mapping[str, str]) -> Native:
        """This request with the client's headers it names in `forward`."""
        found = tuple((name, client_headers[name]) for name in self.forward if name in client_headers)
        return dataclasses.replace(self, headers=found) if found else self

    def fits_request(self, canonical: Body) -> bool:
        return request_view(canonical) == self.basis

    @classmethod
    def of_answer(cls, protocol: str, body: Body, canonical: Body) -> Native:
        return cls(protocol, body, _view(canonical.get("choices")))

    def fits_answer(self, canonical: Body) -> bool:
        return _view(canonical.get("choices")) == self.basis


@runtime_checkable
class Provider(Protocol):
    """One configured provider (`local`, `openai`, `lab`, …) serving its models.

    Two optional members, looked up with getattr: `native_protocols` (the ingress
    protocols whose requests it takes as they are: see `Native`) and
    `async count_tokens(model, body) -> int` (a request's input tokens by its own count).
    """

    name: str
    kind: str  # local | openai_compat | anthropic

    async def chat(self, model: str, body: Body) -> Body:
        """A `chat.completion` body for an OpenAI chat request (stream is false)."""
        ...

    def chat_stream(self, model: str, body: Body) -> AsyncGenerator[Body, None]:
        """`chat.completion.chunk` dicts; the last one carries `usage` when the provider knows it.

        The executor always asks for usage (stream_options.include_usage) and strips
        the usage chunk when the client did not ask for it.
        """
        ...

    async def completion(self, model: str, body: Body) -> Body:
        """A `text_completion` body for an OpenAI /v1/completions request (stream is false)."""
        ...

    async def embeddings(self, model: str, body: Body) -> Body:
        """An embeddings `list` body for an OpenAI /v1/embeddings request."""
        ...

    def models(self) -> list[str]:
        """The models this provider serves, without the provider prefix."""
        ...

    def describe(self) -> dict[str, Any]:
        """What health checks and the console show: device, model path, base_url (never a secret)."""
        ...

    async def aclose(self) -> None: ...
