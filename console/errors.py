"""Domain errors: a request the domain refuses, said in the domain's words, free of HTTP.

The registries, queues and answerers below the HTTP layer raise these; the admin API
turns them into its error envelope (console/gateway/errors_http.py) and the CLI into a
message and an exit code. `code` and `param` are the envelope's fields of the same name.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """Something asked of Fleetdeck that it cannot do; the message is meant for the user."""

    kind: ClassVar[str] = "failed"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class Invalid(DomainError):
    """The request, as asked, is refused: a bad value, an unknown name, a missing reason."""

    kind = "invalid"


class Forbidden(DomainError):
    """The asker may not do this."""

    kind = "forbidden"


class NotFound(DomainError):
    """What the request names does not exist."""

    kind = "not_found"


class Conflict(DomainError):
    """The request collides with the state it would change."""

    kind = "conflict"


class Unavailable(DomainError):
    """What would answer is not there (no running instance, a stopped route)."""

    kind = "unavailable"
