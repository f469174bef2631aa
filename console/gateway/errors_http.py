"""Domain errors to and from the admin API's HTTP envelope.

The admin endpoint (console.gateway.server) answers a DomainError as the ApiError of its
kind; a CLI command that asked the running instance gets the instance's ApiError back as
the DomainError it stood for.
"""

from __future__ import annotations

from console.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unavailable
from console.gateway.openai_api import ApiError

STATUS_OF_KIND = {
    Invalid.kind: 400,
    Forbidden.kind: 403,
    NotFound.kind: 404,
    Conflict.kind: 409,
    Unavailable.kind: 503,
}
KIND_OF_STATUS: dict[int, type[DomainError]] = {
    400: Invalid,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: Unavailable,
}


def api_error_from(error: DomainError) -> ApiError:
    """The envelope a domain error is answered with."""
    status = STATUS_OF_KIND.get(error.kind, 500)
    type_ = "invalid_request_error" if status < 500 else "api_error"
    return ApiError(status, error.message, type_=type_, param=error.param, code=error.code)


def domain_error_from(error: ApiError) -> DomainError:
    """The domain error an instance's envelope stands for (a status of no kind: DomainError)."""
    kind = KIND_OF_STATUS.get(error.status, DomainError)
    return kind(error.message, code=error.code, param=error.param)
