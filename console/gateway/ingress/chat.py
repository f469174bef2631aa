"""OpenAI Chat Completions: `POST /v1/chat/completions`, JSON or server-sent events."""

from console.gateway.ingress.openai_surface import OpenAIIngress
from console.gateway.wire.check import Checked
from console.gateway.wire.openai import ChatCompletionRequest

CHAT = OpenAIIngress("/v1/chat/completions", "chat", "chat_completions", Checked(ChatCompletionRequest))
