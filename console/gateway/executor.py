"""Attempts under one deadline: retries with backoff, circuit breakers, fallback.

One deadline covers the whole request, every retry and fallback included. Each
target of the plan gets a fair slice of the time left (the time left divided by the
targets not yet tried), so retries on a failing primary can never eat the time its
fallbacks need. Retryable errors (429, 5xx, timeouts, broken connections, garbage)
are retried with exponential backoff and full jitter, waiting at least what
`Retry-After` asks; when that wait does not fit the slice, the next target is tried
at once. Retries spend the target's retry budget (`RetryBudget`: a fifth of a retry per
call by default), so an outage never multiplies the calls a target gets by more than
1.2; a target its breaker has just ejected is not retried either. Errors that no retry
can fix (400, content filter) end the request; errors of the target itself (auth,
unknown model, context too long) move on to the next target. A target whose breaker
is open is skipped, unless it is the last one and nothing was tried yet: failing
without trying helps nobody.

For streams, an attempt succeeds once its first chunk arrives (within
`first_token_s`); what happens after the first byte is the relay's business.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from console.gateway.breaker import Breakers, State
from console.policy import Retry, Timeouts
from console.providers.base import ErrorType, Provider, ProviderError

T = TypeVar("T")
log = logging.getLogger("fleetdeck.gateway")

# Failures that say the target is unhealthy (they feed its breaker and justify the
# provider-outage-fallback reason code); a 429 is the target protecting itself.
OUTAGE = frozenset({ErrorType.server_error, ErrorType.timeout, ErrorType.connection, ErrorType.bad_response})
CLIENT_FAULT = frozenset({ErrorType.bad_request, ErrorType.content_filter})


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class Plan:
    targets: tuple[Target, ...]
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_retries: int = 2
    # The first `deployments` targets serve one model: a 429 from one moves the call to the
    # next at once instead of waiting out its Retry-After.
    deployments: int = 1


@dataclass(slots=True)
class Attempt:
    target: Target
    status: str  # ok | error | skipped | cancelled
    latency_ms: float = 0.0
    error_type: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "provider": self.target.provider,
            "model": self.target.model,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.error_type:
            entry["error_type"] = self.error_type
        if self.http_status:
            entry["http_status"] = self.http_status
        if self.retry_after_s is not None:
            entry["retry_after_s"] = self.retry_after_s
        return entry


@dataclass(slots=True)
class Served(Generic[T]):
    value: T
    target: Target
    fell_back: bool  # a target before this one failed because of an outage or its breaker


class ExecutionFailed(Exception):
    def __init__(self, error: ProviderError, target: Target) -> None:
        super().__init__(error.message)
        self.error = error
        self.target = target


Call = Callable[[Provider, str, float], Awaitable[T]]


class AttemptObserver(Protocol):
    """Told when each attempt starts and ends: the load balancer's in-flight counts and latencies."""

    def attempt_started(self, target: Target) -> None: ...

    def attempt_ended(self, attempt: Attempt) -> None: ...


@dataclass(slots=True)
class RetryBudget:
    """One target's retries: each call adds `ratio` of one, a retry spends one, `most` are kept.

    It starts at 1 - ratio, so the first call may retry once, and over any run of N calls the
    retries stay within ratio × N (+ what was kept before the run, at most `most`)."""

    ratio: float
    most: float
    balance: float = 0.0

    def __post_init__(self) -> None:
        self.balance = 1.0 - self.ratio if self.ratio > 0 else 0.0

    def called(self) -> None:
        self.balance = min(self.balance + self.ratio, max(self.most, 1.0))

    def spend(self) -> bool:
        """Take one retry; False when the budget has none."""
        if self.balance < 1.0 - 1e-9:
            return False
        self.balance -= 1.0
        return True


@dataclass
class Executor:
    providers: Mapping[str, Provider]
    breakers: Breakers
    retry: Retry = field(default_factory=Retry)
    rng: random.Random = field(default_factory=random.Random)
    observer: AttemptObserver | None = None
    budgets: dict[str, RetryBudget] = field(default_factory=dict)  # per target name; the loop's only

    def budget(self, target: str) -> RetryBudget:
        budget = self.budgets.get(target)
        if budget is None:
            budget = self.budgets[target] = RetryBudget(self.retry.budget_ratio, self.retry.budget_max)
        return budget

    async def run(self, plan: Plan, attempts: list[Attempt], call: Call[T]) -> Served[T]:
        """Run `call(provider, model, seconds_left)` until a target answers; log every attempt."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + plan.timeouts.total_s
        last: tuple[ProviderError, Target] | None = None
        outage = False
        for index, target in enumerate(plan.targets):
            last_resort = last is None and index == len(plan.targets) - 1
            if not self.breakers[target.name].available() and not last_resort:
                attempts.append(Attempt(target, "skipped", error_type="breaker_open"))
                outage = True
                continue
            slice_end = loop.time() + (deadline - loop.time()) / (len(plan.targets) - index)
            try:
                sibling_next = index < plan.deployments - 1
                value = await self._try_target(plan, target, slice_end, attempts, call, sibling_next)
                return Served(value, target, fell_back=outage)
            except ProviderError as error:
                last = (error, target)
                if error.error_type in CLIENT_FAULT:
                    break
                outage = outage or error.error_type in OUTAGE
        assert last is not None, "the last target is always tried"
        raise ExecutionFailed(*last)

    async def _try_target(
        self,
        plan: Plan,
        target: Target,
        slice_end: float,
        attempts: list[Attempt],
        call: Call[T],
        sibling_next: bool = False,
    ) -> T:
        provider = self.providers[target.provider]
        breaker = self.breakers[target.name]
        budget = self.budget(target.name)
        budget.called()
        loop = asyncio.get_running_loop()
        for retry in range(plan.max_retries + 1):
            started = loop.time()
            left = slice_end - started
            if self.observer is not None:
                self.observer.attempt_started(target)
            try:
                if left <= 0:
                    raise ProviderError(ErrorType.timeout, "the request's deadline passed")
                async with asyncio.timeout(left):
                    value = await call(provider, target.model, left)
            except TimeoutError:
                error = ProviderError(ErrorType.timeout, f"no answer within {left:.1f}s")
            except ProviderError as exc:
                error = exc
            except (asyncio.CancelledError, GeneratorExit):
                breaker.abandoned()
                self._log(attempts, Attempt(target, "cancelled", (loop.time() - started) * 1000))
                raise
            except Exception as exc:  # a provider bug must not take the request down with it
                log.exception("provider %s failed unexpectedly", target.name)
                error = ProviderError(ErrorType.bad_response, f"{type(exc).__name__} in the provider")
            else:
                breaker.succeeded()
                self._log(attempts, Attempt(target, "ok", (loop.time() - started) * 1000))
                return value
            self._failed(target, error, (loop.time() - started) * 1000, attempts)
            if not error.error_type.retryable or retry == plan.max_retries:
                raise error
            if sibling_next and error.error_type is ErrorType.rate_limited:
                raise error  # another deployment of the model has room now
            if self.breakers[target.name].state is not State.closed:
                raise error  # this failure ejected it: the next target, or the error
            wait = max(self.retry.backoff_s(retry + 1, self.rng), error.retry_after_s or 0.0)
            if loop.time() + wait >= slice_end or not budget.spend():
                raise error
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    def _failed(
        self, target: Target, error: ProviderError, latency_ms: float, attempts: list[Attempt]
    ) -> None:
        if error.error_type in OUTAGE:
            self.breakers.failed(target.name)
        else:
            self.breakers[target.name].abandoned()  # not the target's health: free a half-open probe slot
        attempt = Attempt(
            target, "error", latency_ms, error.error_type.value, error.status, error.retry_after_s
        )
        self._log(attempts, attempt)

    def _log(self, attempts: list[Attempt], attempt: Attempt) -> None:
        attempts.append(attempt)
        if self.observer is not None:
            self.observer.attempt_ended(attempt)
