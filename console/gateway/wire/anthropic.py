"""Anthropic's Messages API as Fleetdeck takes it: `POST /v1/messages` and its count_tokens,
with Anthropic's error envelope and the message's outline.

The translation (console/gateway/ingress/messages_request.py) also checks what a schema
cannot say: a `tool_result` answers a `tool_use` of the previous assistant turn, a user turn
holds no `tool_use`, `tool_choice.name` names one of the request's tools.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import Field, with_config
from typing_extensions import TypedDict

from console.gateway.wire.openai import WIRE, NonEmptyText, PositiveInt

Unit = Annotated[float, Field(ge=0, le=1)]


@with_config(WIRE)
class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


@with_config(WIRE)
class Base64Source(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


@with_config(WIRE)
class UrlSource(TypedDict):
    type: Literal["url"]
    url: str


@with_config(WIRE)
class ImageBlock(TypedDict):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]


@with_config(WIRE)
class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: NonEmptyText
    name: NonEmptyText
    input: dict[str, Any]


ToolResultPart = Annotated[TextBlock | ImageBlock, Field(discriminator="type")]


@with_config(WIRE)
class ToolResultBlock(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: Annotated[str, Field(min_length=1, description="a tool_use id of the previous turn")]
    content: NotRequired[str | list[ToolResultPart] | None]
    is_error: NotRequired[bool]


@with_config(WIRE)
class ThinkingBlock(TypedDict):
    type: Literal["thinking", "redacted_thinking"]


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock, Field(discriminator="type")
]


@with_config(WIRE)
class Turn(TypedDict):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentBlock], Field(min_length=1)]


@with_config(WIRE)
class CustomTool(TypedDict):
    type: NotRequired[Literal["custom"] | None]
    name: NonEmptyText
    input_schema: dict[str, Any]
    description: NotRequired[str | None]


@with_config(WIRE)
class ToolChoice(TypedDict):
    type: Literal["auto", "any", "tool", "none"]
    name: NotRequired[Annotated[str, Field(description="with type tool: one of the request's tools")]]
    disable_parallel_tool_use: NotRequired[bool]


@with_config(WIRE)
class CountTokensRequest(TypedDict, total=False):
    """`POST /v1/messages/count_tokens`."""

    model: NonEmptyText | None
    messages: Required[Annotated[list[Turn], Field(min_length=1)]]
    system: str | list[TextBlock] | None
    tools: list[CustomTool] | None
    tool_choice: ToolChoice | None
    metadata: dict[str, Any] | None
    stream: bool | None


@with_config(WIRE)
class MessageRequest(CountTokensRequest, total=False):
    """`POST /v1/messages`."""

    max_tokens: Required[PositiveInt]
    temperature: Unit | None
    top_p: Unit | None
    top_k: Annotated[int, Field(ge=0)] | None
    stop_sequences: list[str] | None


@with_config(WIRE)
class AnthropicErrorDetail(TypedDict):
    type: str
    message: str


@with_config(WIRE)
class AnthropicErrorEnvelope(TypedDict):
    """Anthropic's error envelope: every refusal and failure under /v1/messages."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: NotRequired[str]


@with_config(WIRE)
class Message(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[dict[str, Any]]
    model: str
    stop_reason: str | None
    usage: dict[str, Any]


@with_config(WIRE)
class TokenCount(TypedDict):
    input_tokens: int
