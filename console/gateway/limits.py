"""Rate limits: requests and tokens per window, and calls in flight, per key, environment
and route. All or nothing: a call is admitted under every limit that applies, or under none.

Windows slide: at most `requests` calls start in any `window_s` seconds, so a burst can
never take twice the limit at a window's edge. Tokens are taken up front (an estimate of
the prompt plus `max_tokens`) and settled to the real count when the call ends.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from console.gateway.keys import VirtualKey
from console.policy import Policy, RateLimitConfig, Route

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Limit:
    """One scope's limits (None: no limit of that kind)."""

    scope: str  # e.g. "key:k-01…", "environment:prod", "route:support"
    requests: int | None = None
    tokens: int | None = None
    concurrent: int | None = None
    window_s: float = 60.0


def limits_for(key: VirtualKey | None, route: Route | None, policy: Policy) -> list[Limit]:
    """Every rate limit a call of this key and route is held to."""
    found: list[tuple[str, RateLimitConfig | None]] = []
    if key is not None:
        found.append((f"key:{key.key_id}", _key_limits(key, policy.rate_limits.per_key)))
        by_environment = {str(env): config for env, config in policy.rate_limits.environments.items()}
        found.append((f"environment:{key.environment}", by_environment.get(key.environment)))
    if route is not None:
        found.append((f"route:{route.intent}", route.rate_limit))
    return [_limit(scope, config) for scope, config in found if config is not None and _limits_any(config)]


def _key_limits(key: VirtualKey, default: RateLimitConfig | None) -> RateLimitConfig | None:
    """The key's own limits, kind by kind, over the policy's default for every key."""
    own = {
        kind: value
        for kind, value in (
            ("requests_per_minute", key.requests_per_minute),
            ("tokens_per_minute", key.tokens_per_minute),
            ("concurrent", key.concurrent),
        )
        if value is not None
    }
    if not own:
        return default
    return (default or RateLimitConfig()).model_copy(update=own)


def _limits_any(config: RateLimitConfig) -> bool:
    return any(
        v is not None for v in (config.requests_per_minute, config.tokens_per_minute, config.concurrent)
    )


def _limit(scope: str, config: RateLimitConfig) -> Limit:
    share = config.window_s / 60

    def scaled(per_minute: int | None) -> int | None:
        return None if per_minute is None else max(1, math.floor(per_minute * share))

    return Limit(
        scope,
        scaled(config.requests_per_minute),
        scaled(config.tokens_per_minute),
        config.concurrent,
        config.window_s,
    )


@dataclass(slots=True)
class _Taken:
    at: float
    tokens: int


@dataclass(slots=True)
class _Window:
    """What one scope has admitted in its sliding window, and what is in flight."""

    taken: deque[_Taken] = field(default_factory=deque)
    in_flight: int = 0

    def expire(self, now: float, window_s: float) -> None:
        while self.taken and self.taken[0].at <= now - window_s:
            self.taken.popleft()

    def tokens(self) -> int:
        return sum(t.tokens for t in self.taken)


@dataclass(frozen=True, slots=True)
class Throttled:
    """Refused: which scope and kind ran out, and when to try again."""

    scope: str
    kind: str  # requests | tokens | concurrent
    limit: int
    retry_after_s: float
    headers: dict[str, str]

    def message(self) -> str:
        what = {"requests": "requests", "tokens": "tokens", "concurrent": "requests in flight"}[self.kind]
        return (
            f"rate limit reached for {self.scope}: {self.limit} {what}"
            f"{'' if self.kind == 'concurrent' else ' per window'}; try again in {self.retry_after_s:.1f}s"
        )


class LimitsUnavailable(Exception):
    """A shared limiter cannot be reached: the call is refused, never admitted unlimited."""


class Held(Protocol):
    """An admitted call's share of its limits (what `Call.finish` gives back)."""

    headers: dict[str, str]

    def release(self, tokens_used: int | None) -> None: ...


class Limiter(Protocol):
    """Where rate limits are counted: this process (`RateLimiter`) or the cluster's PostgreSQL
    (console/cluster/limits.py). The limit step and `Call.finish` use only this."""

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> Held | Throttled:
        """Admitted under every limit or none; LimitsUnavailable when it cannot tell."""
        ...


class Lease:
    """An admitted call's share of its limits, released (tokens settled) when it ends."""

    def __init__(
        self, limiter: RateLimiter, taken: list[tuple[Limit, _Taken]], headers: dict[str, str]
    ) -> None:
        self._limiter, self._taken, self.headers = limiter, taken, headers
        self._released = False

    def release(self, tokens_used: int | None) -> None:
        if self._released:
            return
        self._released = True
        self._limiter._release(self._taken, tokens_used)


class RateLimiter:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()  # admin threads settle too; admission must be atomic
        self._windows: dict[str, _Window] = {}

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> Held | Throttled:
        return self.admit(limits, tokens)

    def admit(self, limits: Sequence[Limit], tokens: int) -> Lease | Throttled:
        now = self._clock()
        with self._lock:
            windows = [self._window(limit, now) for limit in limits]
            for limit, window in zip(limits, windows, strict=True):
                refused = _refusal(limit, window, tokens, now)
                if refused is not None:
                    return refused
            taken = []
            for limit, window in zip(limits, windows, strict=True):
                entry = _Taken(now, tokens)
                window.taken.append(entry)
                window.in_flight += 1
                taken.append((limit, entry))
            return Lease(self, taken, _headers(limits, windows, now))

    def _window(self, limit: Limit, now: float) -> _Window:
        window = self._windows.setdefault(limit.scope, _Window())
        window.expire(now, limit.window_s)
        return window

    def _release(self, taken: list[tuple[Limit, _Taken]], tokens_used: int | None) -> None:
        with self._lock:
            for limit, entry in taken:
                self._windows[limit.scope].in_flight -= 1
                if tokens_used is not None:
                    entry.tokens = tokens_used  # settled: an expired entry no longer counts anyway


def _refusal(limit: Limit, window: _Window, tokens: int, now: float) -> Throttled | None:
    if limit.concurrent is not None and window.in_flight >= limit.concurrent:
        return _throttled(limit, "concurrent", limit.concurrent, 1.0, window, now)
    if limit.requests is not None and len(window.taken) >= limit.requests:
        frees_at = window.taken[len(window.taken) - limit.requests].at + limit.window_s
        return _throttled(limit, "requests", limit.requests, frees_at - now, window, now)
    if limit.tokens is not None and window.tokens() + tokens > limit.tokens:
        if tokens > limit.tokens:  # would never fit: say when the window is empty
            return _throttled(limit, "tokens", limit.tokens, limit.window_s, window, now)
        need, freed = window.tokens() + tokens - limit.tokens, 0
        for entry in window.taken:
            freed += entry.tokens
            if freed >= need:
                return _throttled(limit, "tokens", limit.tokens, entry.at + limit.window_s - now, window, now)
    return None


def _throttled(limit: Limit, kind: str, value: int, after_s: float, window: _Window, now: float) -> Throttled:
    after_s = max(after_s, 0.001)
    headers = {**_headers([limit], [window], now), **retry_headers(after_s)}
    return Throttled(limit.scope, kind, value, after_s, headers)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one limit's window holds: the calls and tokens in it, and when its oldest leaves."""

    limit: Limit
    requests: int
    tokens: int
    reset_s: float


def _headers(limits: Sequence[Limit], windows: Sequence[_Window], now: float) -> dict[str, str]:
    return rate_headers(
        [
            Usage(limit, len(w.taken), w.tokens(), w.taken[0].at + limit.window_s - now if w.taken else 0.0)
            for limit, w in zip(limits, windows, strict=True)
        ]
    )


def rate_headers(usages: Sequence[Usage]) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tightest request and token limits."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        tightest: tuple[int, int, float] | None = None
        for usage in usages:
            value = usage.limit.requests if kind == "requests" else usage.limit.tokens
            if value is None:
                continue
            used = usage.requests if kind == "requests" else usage.tokens
            if tightest is None or value - used < tightest[1]:
                tightest = (value, value - used, usage.reset_s)
        if tightest is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(tightest[0])
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(tightest[1], 0))
            headers[f"x-ratelimit-reset-{kind}"] = _duration(tightest[2])
    return headers


def retry_headers(after_s: float) -> dict[str, str]:
    return {"retry-after": str(math.ceil(after_s)), "retry-after-ms": str(math.ceil(after_s * 1000))}


def _duration(seconds: float) -> str:
    """As OpenAI writes it: 1m30s, 6s, 250ms."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.0f}s"
