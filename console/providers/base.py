"""What every provider offers the executor, and the errors it may raise.

The gateway speaks OpenAI's shapes end to end: a provider takes an OpenAI request
body (with `model` already resolved to the provider's own model name) and returns
OpenAI response bodies, or yields OpenAI `chat.completion.chunk` dicts when
streaming. Providers that speak another protocol (Anthropic) translate both ways.

Providers do not retry, time out or fall back: the executor does all of that, by
cancelling the provider's coroutine. A provider must therefore release what it holds
(an upstream connection, a local generation) when it is cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

Body = dict[str, Any]


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

    @classmethod
    def from_openai(cls, usage: Body | None) -> Usage:
        """Read an OpenAI `usage` object (chat, completions or embeddings)."""
        if not usage:
            return cls()
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cache_read_tokens=int(prompt_details.get("cached_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )


@runtime_checkable
class Provider(Protocol):
    """One configured provider (`local`, `openai`, `lab`, …) serving its models."""

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
