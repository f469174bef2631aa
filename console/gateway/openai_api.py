"""The OpenAI surface: request checks light enough for the hot path, and the error envelope.

Status codes follow what the official SDKs map to their exception classes: 400
BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404
NotFoundError, 413 (APIStatusError), 422 UnprocessableEntityError, 429
RateLimitError, 5xx InternalServerError.
"""

from __future__ import annotations

from typing import Any

import orjson

from console.providers.base import Body, ErrorType, ProviderError

MAX_BODY_BYTES = 8 * 1024 * 1024
OPERATIONS = {"chat": "messages", "text_completion": "prompt", "embeddings": "input"}
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class ApiError(Exception):
    """An error answered to the client in OpenAI's envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def envelope(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )

    @property
    def error_type(self) -> str:
        """The trace's error_type for this error."""
        return self.code or self.type


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def parse_body(raw: bytes) -> Body:
    """The request body as a JSON object, or an ApiError naming what is wrong with it."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(
            413,
            f"request body is {len(raw):,} bytes; the limit is {MAX_BODY_BYTES:,}",
            code="request_too_large",
        )
    if not raw.strip():
        raise bad_request("request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "is not valid UTF-8" if _not_utf8(raw) else f"is not valid JSON ({exc})"
        raise bad_request(f"request body {reason}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(
            f"request body must be a JSON object, not {type(body).__name__}", code="invalid_json"
        )
    return body


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def check_request(operation: str, body: Body) -> None:
    """Checks the fields the gateway itself relies on; the provider checks the rest."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string", param="model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false", param="stream")
    if stream and operation == "embeddings":
        raise bad_request("embeddings cannot be streamed", param="stream")
    field = OPERATIONS[operation]
    if field not in body:
        raise bad_request(f"'{field}' is required", param=field)
    if operation == "chat":
        _check_messages(body["messages"])
    elif not isinstance(body[field], str | list) or not body[field]:
        raise bad_request(f"'{field}' must be a non-empty string or list", param=field)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise bad_request(f"'{name}' must be a positive integer", param=name)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise bad_request(f"'{name}' must be a number", param=name)
    _check_object(body, "metadata")
    _check_object(body, "stream_options")
    _check_object(body, "response_format")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise bad_request(f"{param} must be an object", param=param)
        role = message.get("role")
        if role not in ROLES:
            raise bad_request(
                f"{param}.role must be one of {', '.join(sorted(ROLES))}", param=f"{param}.role"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad_request(f"{param}.content must be a string or an array", param=f"{param}.content")


def _check_object(body: Body, name: str) -> None:
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise bad_request(f"'{name}' must be an object", param=name)


def from_provider_error(error: ProviderError, provider: str) -> ApiError:
    """The client's view of an upstream failure that no retry or fallback could cover."""
    message = f"{provider}: {error.message}"
    match error.error_type:
        case ErrorType.bad_request:
            return ApiError(400, message, code="upstream_bad_request")
        case ErrorType.context_length:
            return ApiError(400, message, code="context_length_exceeded", param="messages")
        case ErrorType.content_filter:
            return ApiError(400, message, code="content_filter")
        case ErrorType.not_found:
            return ApiError(404, message, code="model_not_found", param="model")
        case ErrorType.rate_limited:
            headers = {"Retry-After": f"{error.retry_after_s:.0f}"} if error.retry_after_s else {}
            return ApiError(429, message, type_="rate_limit_error", code="rate_limited", headers=headers)
        case ErrorType.timeout:
            return ApiError(504, message, type_="api_error", code="upstream_timeout")
        case ErrorType.auth:
            return ApiError(
                502,
                f"{provider} refused Fleetdeck's credentials; set them with `fleetdeck keys set-secret`",
                type_="api_error",
                code="upstream_auth",
            )
        case _:
            return ApiError(502, message, type_="api_error", code=f"upstream_{error.error_type.value}")
