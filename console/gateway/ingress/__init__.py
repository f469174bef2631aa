"""Ingress adapters, one module per wire protocol: each parses its requests into the
canonical call (console.gateway.call) and renders the answer, the stream and the errors
back in its own shape. A new protocol is a new module here; no step changes."""

from console.gateway.ingress.base import Ingress, Reply
from console.gateway.ingress.chat import CHAT
from console.gateway.ingress.completions import COMPLETIONS
from console.gateway.ingress.embeddings import EMBEDDINGS
from console.gateway.ingress.messages import COUNT_TOKENS, MESSAGES
from console.gateway.ingress.responses import RESPONSES

ADAPTERS: tuple[Ingress, ...] = (CHAT, COMPLETIONS, EMBEDDINGS, RESPONSES, MESSAGES, COUNT_TOKENS)

__all__ = [
    "ADAPTERS",
    "CHAT",
    "COMPLETIONS",
    "COUNT_TOKENS",
    "EMBEDDINGS",
    "MESSAGES",
    "RESPONSES",
    "Ingress",
    "Reply",
]
