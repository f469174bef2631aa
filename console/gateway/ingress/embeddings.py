"""OpenAI Embeddings: `POST /v1/embeddings`, an `input` answered with vectors; never streamed."""

from console.gateway.ingress.openai_surface import OpenAIIngress
from console.gateway.wire.check import Checked
from console.gateway.wire.openai import EmbeddingRequest

EMBEDDINGS = OpenAIIngress("/v1/embeddings", "embeddings", "embeddings", Checked(EmbeddingRequest))
