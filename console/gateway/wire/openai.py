"""OpenAI's surface as Fleetdeck takes it: Chat Completions, Completions, Embeddings and the
Responses API, with the error envelope and the answers' outlines.

Only what the gateway relies on is constrained; the other fields pass to the provider as
sent (`extra="allow"`). The chat family's bodies are checked with these models on every call.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import ConfigDict, Discriminator, Field, Tag, with_config
from typing_extensions import TypedDict

WIRE = ConfigDict(extra="ignore", strict=True)  # checked, never copied: the body goes on as sent
PositiveInt = Annotated[int, Field(ge=1)]
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
NonEmptyText = Annotated[str, Field(min_length=1)]
NonEmptyList = Annotated[list[Any], Field(min_length=1)]


@with_config(WIRE)
class ChatMessage(TypedDict, total=False):
    role: Required[Role]
    content: str | list[Any] | None
    name: str
    tool_calls: list[Any]
    tool_call_id: str


@with_config(WIRE)
class _Sampling(TypedDict, total=False):
    """The fields every chat-family request may carry."""

    model: Annotated[
        str | None, Field(description="`provider/model` or `route:<intent>`; else the default route")
    ]
    stream: bool | None
    max_tokens: PositiveInt | None
    max_completion_tokens: PositiveInt | None
    n: PositiveInt | None
    temperature: float | None
    top_p: float | None
    metadata: Annotated[
        dict[str, Any] | None,
        Field(description="Fleetdeck's context keys (workflow, task, step, tier) among them"),
    ]
    stream_options: dict[str, Any] | None
    response_format: dict[str, Any] | None


@with_config(WIRE)
class ChatCompletionRequest(_Sampling, total=False):
    """`POST /v1/chat/completions`."""

    messages: Required[Annotated[list[ChatMessage], Field(min_length=1)]]
    tools: list[Any] | None
    tool_choice: Any


@with_config(WIRE)
class CompletionRequest(_Sampling, total=False):
    """`POST /v1/completions` (legacy)."""

    prompt: Required[NonEmptyText | NonEmptyList]


@with_config(WIRE)
class EmbeddingRequest(TypedDict, total=False):
    """`POST /v1/embeddings`: never streamed."""

    model: str | None
    input: Required[NonEmptyText | NonEmptyList]
    stream: Literal[False] | None
    metadata: dict[str, Any] | None
    encoding_format: str
    dimensions: PositiveInt


# --- the Responses API ----------------------------------------------------------------------


@with_config(WIRE)
class TextPart(TypedDict):
    type: Literal["input_text", "output_text", "text"]
    text: str


@with_config(WIRE)
class RefusalPart(TypedDict):
    type: Literal["refusal"]
    refusal: str


@with_config(WIRE)
class ImagePart(TypedDict):
    type: Literal["input_image"]
    image_url: Annotated[str, Field(description="a URL or a data URL (file_id images are not supported)")]
    detail: NotRequired[str]


ContentPart = Annotated[TextPart | RefusalPart | ImagePart, Field(discriminator="type")]


@with_config(WIRE)
class MessageItem(TypedDict):
    type: NotRequired[Literal["message"]]
    id: NotRequired[str]
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]


@with_config(WIRE)
class FunctionCallItem(TypedDict):
    type: Literal["function_call"]
    id: NotRequired[str]
    call_id: NonEmptyText
    name: NonEmptyText
    arguments: str


@with_config(WIRE)
class FunctionCallOutputItem(TypedDict):
    """Must follow its function_call (in this input or the stored conversation)."""

    type: Literal["function_call_output"]
    id: NotRequired[str]
    call_id: NonEmptyText
    output: str | list[Any]


@with_config(WIRE)
class ReasoningItem(TypedDict):
    """Kept in the stored input, never sent on."""

    type: Literal["reasoning"]
    id: NotRequired[str]


def item_type(item: Any) -> str | None:
    """An input item's kind: its `type`, a message when it names none."""
    return item.get("type", "message") if isinstance(item, dict) else None


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(item_type),
]


@with_config(WIRE)
class FunctionTool(TypedDict):
    type: Literal["function"]
    name: NonEmptyText
    description: NotRequired[str | None]
    parameters: NotRequired[dict[str, Any] | None]
    strict: NotRequired[bool | None]


@with_config(WIRE)
class FunctionChoice(TypedDict):
    type: Literal["function"]
    name: str


@with_config(WIRE)
class TextFormat(TypedDict):
    type: Literal["text", "json_object", "json_schema"]
    name: NotRequired[str]
    schema: NotRequired[Annotated[dict[str, Any], Field(description="required for json_schema")]]
    description: NotRequired[str]
    strict: NotRequired[bool]


@with_config(WIRE)
class TextOptions(TypedDict, total=False):
    format: TextFormat | None


@with_config(WIRE)
class ResponseCreateRequest(TypedDict, total=False):
    """`POST /v1/responses`."""

    model: str | None
    input: Required[NonEmptyText | Annotated[list[InputItem], Field(min_length=1)]]
    instructions: str | None
    previous_response_id: Annotated[
        str | None, Field(description="continues a response stored for the same key")
    ]
    store: bool | None
    stream: bool | None
    temperature: float | None
    top_p: float | None
    max_output_tokens: PositiveInt | None
    metadata: dict[str, Any] | None
    user: str | None
    parallel_tool_calls: bool | None
    reasoning: dict[str, Any] | None
    tools: list[FunctionTool] | None
    tool_choice: Literal["auto", "none", "required"] | FunctionChoice | None
    text: TextOptions | None
    background: Annotated[Literal[False] | None, Field(description="not supported")]
    conversation: Annotated[None, Field(description="not supported; use previous_response_id")]
    prompt: Annotated[None, Field(description="not supported; use X-Fleetdeck-Prompt")]


# --- answers ------------------------------------------------------------------------------


@with_config(WIRE)
class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


@with_config(WIRE)
class ErrorEnvelope(TypedDict):
    """OpenAI's error envelope: every refusal and failure of the OpenAI surface and Fleetdeck's own."""

    error: ErrorDetail


@with_config(WIRE)
class ChatCompletion(TypedDict):
    id: str
    object: str
    model: str
    choices: list[dict[str, Any]]
    usage: NotRequired[dict[str, Any] | None]


@with_config(WIRE)
class Completion(TypedDict):
    id: str
    object: str
    choices: list[dict[str, Any]]


@with_config(WIRE)
class EmbeddingList(TypedDict):
    object: Literal["list"]
    data: list[dict[str, Any]]
    model: str


@with_config(WIRE)
class Response(TypedDict):
    id: str
    object: Literal["response"]
    status: str
    output: list[dict[str, Any]]
    usage: NotRequired[dict[str, Any] | None]


@with_config(WIRE)
class ResponseDeleted(TypedDict):
    id: str
    object: Literal["response"]
    deleted: bool


@with_config(WIRE)
class InputItemList(TypedDict):
    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool


@with_config(WIRE)
class Model(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


@with_config(WIRE)
class ModelList(TypedDict):
    object: Literal["list"]
    data: list[Model]
