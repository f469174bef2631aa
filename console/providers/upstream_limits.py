"""What an upstream says of its own rate limits, read from the headers of each answer:
OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` and Anthropic's
`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`. The load balancer moves
traffic off a deployment that has none left until its reset, before it starts refusing."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$"
)
KINDS = ("requests", "tokens")
_Parser = Callable[[str], float | None]


@dataclass(frozen=True, slots=True)
class Budget:
    """One kind of limit (requests or tokens) as last reported."""

    limit: int | None
    remaining: int
    resets_at: float | None  # time.monotonic() seconds


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    budgets: dict[str, Budget]  # by kind

    def exhausted_until(self, now: float) -> float | None:
        """When a kind with nothing left resets, if it has not yet."""
        ends = [
            b.resets_at
            for b in self.budgets.values()
            if b.remaining <= 0 and b.resets_at and b.resets_at > now
        ]
        return max(ends) if ends else None

    def headroom(self, now: float) -> float | None:
        """The smallest share left of any kind whose window is still open; None when unknown."""
        shares = [
            b.remaining / b.limit
            for b in self.budgets.values()
            if b.limit and (b.resets_at is None or b.resets_at > now)
        ]
        return min(shares) if shares else None

    def as_json(self, now: float) -> dict[str, object]:
        return {
            kind: {
                "limit": b.limit,
                "remaining": b.remaining,
                "resets_in_s": None if b.resets_at is None else round(max(b.resets_at - now, 0), 3),
            }
            for kind, b in self.budgets.items()
        }


def read_limits(headers: Mapping[str, str], now: float | None = None) -> UpstreamLimits | None:
    """The limits an answer's headers report, or None when they report none."""
    now = time.monotonic() if now is None else now
    budgets: dict[str, Budget] = {}
    for kind in KINDS:
        openai = _budget(headers, f"x-ratelimit-{{}}-{kind}", now, _after_duration)
        found = openai or _budget(headers, f"anthropic-ratelimit-{kind}-{{}}", now, _after_timestamp)
        if found is not None:
            budgets[kind] = found
    return UpstreamLimits(budgets) if budgets else None


def _budget(headers: Mapping[str, str], name: str, now: float, when: _Parser) -> Budget | None:
    """`name` has a `{}` where the header says limit, remaining or reset."""
    left = _int(headers.get(name.format("remaining")))
    if left is None:
        return None
    after = when(headers.get(name.format("reset")) or "")
    return Budget(_int(headers.get(name.format("limit"))), left, None if after is None else now + after)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _after_duration(text: str) -> float | None:
    """OpenAI's reset: `1s`, `6m0s`, `20ms`, `1h2m3.5s`."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        return None
    hours, minutes, seconds, millis = (float(group) if group else 0.0 for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _after_timestamp(text: str) -> float | None:
    """Anthropic's reset: an RFC 3339 time."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
