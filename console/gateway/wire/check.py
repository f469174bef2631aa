"""A wire model as a request check: the body passes as it came, or an ApiError 400 names the
first field that is wrong (`messages[0].role`), as OpenAI's own validation does."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from console.gateway.openai_api import ApiError, bad_request

T = TypeVar("T")


class Checked(Generic[T]):
    """A TypeAdapter over a wire model, used only to check: the body itself is kept."""

    def __init__(self, model: type[T]) -> None:
        self.model = model
        self.adapter: TypeAdapter[T] = TypeAdapter(model)
        self._validate = self.adapter.validator.validate_python  # pydantic-core's, straight

    def check(self, body: Any) -> None:
        try:
            self._validate(body)
        except ValidationError as invalid:
            raise refusal(invalid.errors(include_url=False, include_input=False)) from None


def refusal(errors: list[ErrorDetails]) -> ApiError:
    """The deepest of pydantic's errors (in a union, the branch that came closest) as OpenAI's
    400, `param` the path to the field."""
    errors = [_tagged(e) for e in errors]
    param = max((param_of(e["loc"]) for e in errors), key=len)
    said = [_said(e) for e in errors if param_of(e["loc"]) == param]
    message = " or ".join(dict.fromkeys(said))  # a union's branches: each one's reason, once
    return bad_request(f"{param}: {message}" if param else message, param=param or None)


def _tagged(error: ErrorDetails) -> ErrorDetails:
    """An unknown `type` of a tagged union is about that field: `input[0].type`."""
    if error["type"] != "union_tag_invalid":
        return error
    ctx = error.get("ctx") or {}
    field = str(ctx.get("discriminator", "type")).strip("'")
    field = "type" if field.endswith("()") else field
    said = f"unknown {field} {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    return {**error, "loc": (*error["loc"], field), "msg": said, "type": "literal_error"}


def _said(error: ErrorDetails) -> str:
    return "field required" if error["type"] == "missing" else error["msg"]


def param_of(loc: tuple[int | str, ...]) -> str:
    """("messages", 0, "role") → "messages[0].role"; union branch tags are left out."""
    param = ""
    for part in loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif _is_tag(part):
            continue
        else:
            param += f".{part}" if param else part
    return param


def _is_tag(part: str) -> bool:
    """A union branch's name in pydantic's location (`str`, `list[...]`, `constrained-str`, a
    model's class name); the wire's own field names are lower-case words."""
    return part in _TAGS or "[" in part or "-" in part or part[:1].isupper()


_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "literal", "tagged-union"}) | {
    "message",  # the Responses API's input items, tagged by wire.openai.item_type
    "function_call",
    "function_call_output",
    "reasoning",
}
