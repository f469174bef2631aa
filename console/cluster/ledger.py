"""The budget ledger shared by every replica, in PostgreSQL.

One reservation is one call of the `reserve` function (console/cluster/schema.py): the
buckets of every cap are row-locked in a fixed order, and the holds are inserted only
when each cap has room, all or none, so replicas never overshoot a cap between them.
A hold carries an expiry (the call's total timeout plus a margin), so a replica killed
mid-call leaks nothing past it. Settling replaces the hold by the real cost, once
(retried until PostgreSQL takes it; a retry never adds twice).

The gateway's event loop talks to PostgreSQL through psycopg's AsyncConnectionPool:
a reservation awaits its statement without blocking other calls, and every wait is
bounded by `cluster_wait_s`, after which the call is refused (fail closed) rather than
served unbudgeted (while PostgreSQL answers, a burst may queue for a connection a few
times longer). Settlements never hold up the answer: they run as tasks of their own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from console.clock import utc_now
from console.cluster.pool import open_schema_pool
from console.gateway.budget import (
    Burn,
    Cap,
    LedgerUnavailable,
    Period,
    Refusal,
    Reservation,
    cap_nanos,
    nanos_up,
    period_key,
    usd,
)

log = logging.getLogger("fleetdeck.cluster")
LEASE_MARGIN_S = 30.0  # a hold outlives its call's deadline by this much

# While PostgreSQL answers, a call may queue this many times `cluster_wait_s` for one of the
# pool's connections (a burst outnumbers them); once it is known unreachable, only one.
QUEUE_FACTOR = 5
SETTLE_RETRY_S = 0.5
FAILURES = (psycopg.Error, PoolTimeout, TimeoutError, OSError)


@dataclass
class Outage:
    since: datetime
    reason: str
    refused: int = 0  # calls refused because the ledger could not be reached


OutageOver = Callable[[Outage, datetime], None]


def where(conninfo: str) -> str:
    """host:port/dbname of a connection string, without user or password."""
    parts = pg_conninfo.conninfo_to_dict(conninfo)
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class SharedLedger:
    def __init__(
        self,
        conninfo: str,
        schema: str,
        replica: str,
        *,
        wait_s: float,
        lease_s: float | None,
        on_outage_over: OutageOver,
    ) -> None:
        self._conninfo, self._schema, self.replica = conninfo, schema, replica
        self._wait_s, self._lease_s, self._on_outage_over = wait_s, lease_s, on_outage_over
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settling: set[asyncio.Task[None]] = set()
        self._caps: dict[tuple[str, Period], float] = {}
        self._breached: set[tuple[str, str]] = set()
        self._state: dict[tuple[str, str], tuple[int, int]] = {}  # (spent, held) as last read
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        self.where = where(conninfo)

    # -- the Ledger protocol ----------------------------------------------------------

    async def reserve(self, caps: Sequence[Cap], amount_usd: float, lease_s: float) -> Reservation | Refusal:
        now, amount = utc_now(), nanos_up(amount_usd)
        ordered = sorted(caps, key=lambda cap: cap.bucket(now))
        buckets = [cap.bucket(now) for cap in ordered]
        with self._lock:
            self._caps.update({(cap.scope, cap.period): cap.limit_usd for cap in ordered})
        reservation = Reservation(tuple(buckets), amount)
        lease = self._lease_s if self._lease_s is not None else lease_s + LEASE_MARGIN_S
        params = [
            reservation.reservation_id,
            [scope for scope, _ in buckets],
            [key for _, key in buckets],
            [cap_nanos(cap.limit_usd) for cap in ordered],
            amount,
            lease,
            self.replica,
        ]
        wait_s = self._wait_s if self.outage() is not None else QUEUE_FACTOR * self._wait_s
        try:
            async with asyncio.timeout(wait_s + self._wait_s):
                pool = await self._open()
                async with pool.connection(timeout=wait_s) as conn:
                    cur = await conn.execute(
                        "SELECT refused, spent, held FROM reserve(%s, %s, %s, %s, %s, %s, %s)", params
                    )
                    row = await cur.fetchone()
        except FAILURES as exc:
            raise LedgerUnavailable(self._refused(exc)) from None
        self.note_reachable()
        if row is None:
            return reservation
        cap, bucket = ordered[row[0] - 1], buckets[row[0] - 1]
        with self._lock:
            first = bucket not in self._breached
            self._breached.add(bucket)
        return Refusal(cap, usd(row[1]), usd(row[2]), amount_usd, first)

    def settle(self, reservation: Reservation, cost_usd: float) -> None:
        if not reservation.open:
            return
        reservation.open = False
        assert self._loop is not None, "settled before anything was reserved"
        cost = nanos_up(cost_usd)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._start_settling(reservation, cost)
        else:
            self._loop.call_soon_threadsafe(self._start_settling, reservation, cost)

    def burn(self) -> list[Burn]:
        now = utc_now()
        with self._lock:
            burns = []
            for (scope, period), limit in sorted(self._caps.items()):
                spent, held = self._state.get((scope, period_key(period, now)), (0, 0))
                burns.append(Burn(scope, period, limit, usd(spent), usd(held)))
            return burns

    def outage(self) -> str | None:
        with self._lock:
            outage = self._outage
        if outage is None:
            return None
        return (
            f"the cluster's budget ledger (PostgreSQL at {self.where}) has been unreachable since "
            f"{outage.since:%Y-%m-%d %H:%M:%S} UTC ({outage.reason}); calls under a hard cap are refused "
            "rather than served unbudgeted. Retry once PostgreSQL is back: no restart is needed "
            "(`fleetdeck cluster status` shows what the replicas see)"
        )

    # -- what the cluster's sync job tells it ------------------------------------------

    def observe(self, state: dict[tuple[str, str], tuple[int, int]]) -> None:
        """Spend and holds per bucket as PostgreSQL has them (for `burn`)."""
        with self._lock:
            self._state = state

    def note_unreachable(self, exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        with self._lock:
            if self._outage is None:
                self._outage = Outage(utc_now(), reason)
                log.warning("cluster ledger unreachable at %s: %s", self.where, reason)

    def note_reachable(self) -> None:
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is not None:
            log.warning("cluster ledger at %s reachable again", self.where)
            self._on_outage_over(outage, utc_now())

    async def aclose(self) -> None:
        """Let settlements in flight finish (bounded), then close the pool."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=2 * self._wait_s)
        if self._pool is not None:
            await self._pool.close(timeout=self._wait_s)
            self._pool = None

    # -- inside --------------------------------------------------------------------------

    def _refused(self, exc: BaseException) -> str:
        self.note_unreachable(exc)
        with self._lock:
            if self._outage is not None:
                self._outage.refused += 1
        return self.outage() or str(exc)

    async def _open(self) -> AsyncConnectionPool:
        if self._pool is None:
            self._loop = asyncio.get_running_loop()
            pool = await open_schema_pool(
                self._conninfo, self._schema, self._wait_s, f"fleetdeck-ledger-{self.replica}", min_size=2
            )
            if self._pool is None:
                self._pool = pool
            else:
                await pool.close()
        return self._pool

    def _start_settling(self, reservation: Reservation, cost: int) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(reservation, cost))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, reservation: Reservation, cost: int) -> None:
        params = [
            reservation.reservation_id,
            [scope for scope, _ in reservation.buckets],
            [key for _, key in reservation.buckets],
            cost,
        ]
        while True:
            try:
                async with asyncio.timeout((QUEUE_FACTOR + 1) * self._wait_s):
                    pool = await self._open()
                    async with pool.connection(timeout=QUEUE_FACTOR * self._wait_s) as conn:
                        await conn.execute("SELECT settle(%s, %s, %s, %s)", params)
                self.note_reachable()
                return
            except FAILURES as exc:
                self.note_unreachable(exc)
                await asyncio.sleep(SETTLE_RETRY_S)
