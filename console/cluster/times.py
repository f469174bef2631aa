"""Timestamps between PostgreSQL (aware, timestamptz) and the stores (naive UTC)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def naive_utc(at: datetime) -> datetime: ...
@overload
def naive_utc(at: None) -> None: ...
def naive_utc(at: datetime | None) -> datetime | None:
    return at.astimezone(UTC).replace(tzinfo=None) if at is not None and at.tzinfo else at


@overload
def aware_utc(at: datetime) -> datetime: ...
@overload
def aware_utc(at: None) -> None: ...
def aware_utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at
