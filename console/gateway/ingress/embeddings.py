"""OpenAI Embeddings: `POST /v1/embeddings`, an `input` answered with vectors; never streamed."""

from console.gateway.ingress.openai_surface import OpenAIIngress

EMBEDDINGS = OpenAIIngress("/v1/embeddings", "embeddings", "embeddings", "input")
