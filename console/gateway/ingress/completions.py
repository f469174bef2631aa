"""OpenAI (legacy) Completions: `POST /v1/completions`, a `prompt` answered as text."""

from console.gateway.ingress.openai_surface import OpenAIIngress
from console.gateway.wire.check import Checked
from console.gateway.wire.openai import CompletionRequest

COMPLETIONS = OpenAIIngress("/v1/completions", "text_completion", "completions", Checked(CompletionRequest))
