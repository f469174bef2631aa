"""OpenAI (legacy) Completions: `POST /v1/completions`, a `prompt` answered as text."""

from console.gateway.ingress.openai_surface import OpenAIIngress

COMPLETIONS = OpenAIIngress("/v1/completions", "text_completion", "completions", "prompt")
