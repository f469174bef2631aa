"""The console's notion of "now": naive UTC, injectable so tests can freeze it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from console.clock import utc_now

Clock = Callable[[], datetime]


def frozen(at: datetime) -> Clock:
    """A clock that always answers `at` (snapshot tests)."""

    def now() -> datetime:
        return at

    return now


SYSTEM_CLOCK: Clock = utc_now
