"""The rate limits shared by every replica, in PostgreSQL (the `rate_admit` function of
console/cluster/schema.py): one statement per admission, exact across replicas; a call's
concurrency slot is a lease that lapses if its replica dies. Unreachable PostgreSQL refuses
the call (LimitsUnavailable, a 503) after `cluster_wait_s`, as the budget ledger does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from console.cluster.ledger import FAILURES, QUEUE_FACTOR, SETTLE_RETRY_S, where
from console.cluster.pool import open_schema_pool
from console.gateway.limits import (
    Held,
    Limit,
    LimitsUnavailable,
    Throttled,
    Usage,
    rate_headers,
    retry_headers,
)

RELEASE_TRIES = 5  # after these the lease lapses on its own
ADMIT = "SELECT refused, kind, requests, tokens, reset_s, retry_s FROM rate_admit(%s,%s,%s,%s,%s,%s,%s,%s,%s)"


class SharedLease:
    def __init__(self, limiter: SharedLimiter, take: uuid.UUID, headers: dict[str, str]) -> None:
        self._limiter, self._take, self.headers = limiter, take, headers
        self._released = False

    def release(self, tokens_used: int | None) -> None:
        if not self._released:
            self._released = True
            self._limiter.release(self._take, tokens_used)


class SharedLimiter:
    def __init__(self, conninfo: str, schema: str, replica: str, *, wait_s: float, lease_s: float) -> None:
        self._conninfo, self._schema, self.replica = conninfo, schema, replica
        self._wait_s, self._lease_s = wait_s, lease_s
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        self._down = False  # the last admission could not reach PostgreSQL: wait no longer than wait_s
        self.where = where(conninfo)

    async def acquire(self, limits: Sequence[Limit], tokens: int) -> Held | Throttled:
        ordered = sorted(limits, key=lambda limit: limit.scope)
        take = uuid.uuid4()
        rows = await self._admit(take, ordered, tokens)
        if rows and rows[0][0]:
            return _throttled(ordered[rows[0][0] - 1], rows[0])
        usages = [Usage(limit, row[2], row[3], row[4]) for limit, row in zip(ordered, rows, strict=True)]
        return SharedLease(self, take, rate_headers(usages))

    async def _admit(self, take: uuid.UUID, ordered: Sequence[Limit], tokens: int) -> list[tuple]:  # type: ignore[type-arg]
        params = [
            take,
            [limit.scope for limit in ordered],
            [limit.window_s for limit in ordered],
            [limit.requests for limit in ordered],
            [limit.tokens for limit in ordered],
            [limit.concurrent for limit in ordered],
            tokens,
            self._lease_s,
            self.replica,
        ]
        wait_s = self._wait_s if self._down else QUEUE_FACTOR * self._wait_s  # a burst queues for the pool
        try:
            async with asyncio.timeout(wait_s + self._wait_s):
                pool = await self._open()
                async with pool.connection(timeout=wait_s) as conn:
                    cur = await conn.execute(ADMIT, params)
                    rows = await cur.fetchall()
        except FAILURES as exc:
            self._down = True
            raise LimitsUnavailable(self._unreachable(exc)) from None
        self._down = False
        return rows

    def _unreachable(self, exc: BaseException) -> str:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"the cluster's rate limits (PostgreSQL at {self.where}) cannot be reached ({reason}); "
            "calls under a rate limit are refused rather than served unlimited. Retry once PostgreSQL is back"
        )

    def release(self, take: uuid.UUID, tokens_used: int | None) -> None:
        """Free the slot and settle the tokens; never waits on the network."""
        assert self._loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._start_release(take, tokens_used)
        else:
            self._loop.call_soon_threadsafe(self._start_release, take, tokens_used)

    def _start_release(self, take: uuid.UUID, tokens_used: int | None) -> None:
        task = asyncio.get_running_loop().create_task(self._release(take, tokens_used))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, take: uuid.UUID, tokens_used: int | None) -> None:
        for _ in range(RELEASE_TRIES):
            try:
                async with asyncio.timeout(2 * self._wait_s):
                    pool = await self._open()
                    async with pool.connection(timeout=self._wait_s) as conn:
                        await conn.execute("SELECT rate_release(%s, %s)", [take, tokens_used])
                return
            except FAILURES:
                await asyncio.sleep(SETTLE_RETRY_S)

    async def aclose(self) -> None:
        if self._releasing:
            await asyncio.wait(set(self._releasing), timeout=2 * self._wait_s)
        if self._pool is not None:
            await self._pool.close(timeout=self._wait_s)
            self._pool = None

    async def _open(self) -> AsyncConnectionPool:
        if self._pool is None:
            self._loop = asyncio.get_running_loop()
            pool = await open_schema_pool(
                self._conninfo, self._schema, self._wait_s, f"fleetdeck-limits-{self.replica}", min_size=1
            )
            if self._pool is None:
                self._pool = pool
            else:
                await pool.close()
        return self._pool


def _throttled(limit: Limit, row: tuple) -> Throttled:  # type: ignore[type-arg]
    kind, after_s = str(row[1]), max(float(row[5]), 0.001)
    value = {"concurrent": limit.concurrent, "requests": limit.requests, "tokens": limit.tokens}[kind]
    assert value is not None
    headers = {**rate_headers([Usage(limit, row[2], row[3], row[4])]), **retry_headers(after_s)}
    return Throttled(limit.scope, kind, value, after_s, headers)
