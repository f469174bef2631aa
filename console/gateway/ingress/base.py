"""What every ingress adapter gives the server, and the reply it renders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from console.gateway.call import Call, CanonicalRequest
from console.gateway.openai_api import ApiError


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


class Ingress(Protocol):
    @property
    def path(self) -> str:
        """Where the server mounts it (POST)."""
        ...

    @property
    def operation(self) -> str:
        """chat | text_completion | embeddings"""
        ...

    @property
    def protocol(self) -> str:
        """chat_completions | completions | embeddings | responses"""
        ...

    def parse(self, raw: bytes) -> CanonicalRequest:
        """The wire request in canonical form, or the ApiError that says what is wrong with it."""
        ...

    def render(self, call: Call) -> Reply:
        """The call's answer (a body or a stream of events) in this protocol's shape."""
        ...

    def refuse(self, call: Call, error: ApiError) -> Reply:
        """A refused call, in this protocol's error envelope."""
        ...
