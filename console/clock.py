"""Fleetdeck's clock and ids: naive UTC "now", and the ULIDs that name requests, evals and audit entries."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


def utc_now() -> datetime:
    """Now, as a naive UTC datetime (how every timestamp is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_request_id() -> str:
    """A new ULID: unique, and sorting in the order it was made."""
    return str(ULID())
