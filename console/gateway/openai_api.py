"""The OpenAI error envelope, the body parser every ingress shares, and upstream errors as
clients see them.

Status codes follow what the official SDKs map to their exception classes: 400
BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404
NotFoundError, 413 (APIStatusError), 422 UnprocessableEntityError, 429
RateLimitError, 5xx InternalServerError.
"""

from __future__ import annotations

import orjson

from console.providers.base import Body, ErrorType, ProviderError

MAX_BODY_BYTES = 8 * 1024 * 1024


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


def unrecorded(message: str) -> ApiError:
    """The 503 of a call the recorder cannot keep (the spool cannot be written): fail closed."""
    return ApiError(503, message, type_="api_error", code="recorder_unavailable")


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
