"""OpenAI Chat Completions: `POST /v1/chat/completions`, JSON or server-sent events."""

from console.gateway.ingress.openai_surface import OpenAIIngress

CHAT = OpenAIIngress("/v1/chat/completions", "chat", "chat_completions", "messages")
