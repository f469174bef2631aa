"""Breaker ejections shared by every replica (PostgreSQL's `ejections` table).

When a replica's breaker ejects a provider/model, its sync job publishes the ejection
with the time it ends (`until`, counted on PostgreSQL's clock, so the replicas' clocks
need not agree). Every other replica's sync job reads the ejections still in force and
opens its own breaker for that target until then (`Breakers.follow`): within a second of
one replica ejecting a target, none sends it traffic (a target that is a route's last
resort is still tried, as on one box). The probe after the cool-down is each replica's
own: a replica whose probe fails ejects again, for its own next length, and publishes
that. A target's row keeps the latest end; the audit entry (`breaker.opened`) is written
by the replica that ejected.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime

import psycopg

from console.gateway.breaker import Breaker, Breakers

PUBLISH = (
    "INSERT INTO ejections AS e (target, replica, ejected_at, until, ejections) "
    "VALUES (%s, %s, now(), now() + make_interval(secs => %s), %s) ON CONFLICT (target) DO UPDATE "
    "SET replica = excluded.replica, ejected_at = excluded.ejected_at, until = excluded.until, "
    "ejections = excluded.ejections WHERE e.until < excluded.until"
)


class SharedBreakers:
    def __init__(self, replica: str) -> None:
        self.replica = replica
        self._breakers: Breakers | None = None
        self._outbox: deque[tuple[str, float, int, float]] = deque()  # target, seconds, count, queued at
        self._followed: dict[str, tuple[str, datetime]] = {}  # target → the ejection followed (replica, at)

    def attach(self, breakers: Breakers) -> None:
        self._breakers = breakers

    def ejected(self, target: str, breaker: Breaker) -> None:
        """This replica's breaker ejected `target` (the event loop): published on the next sync."""
        self._outbox.append((target, breaker.retry_in(), breaker.ejections, time.monotonic()))

    def sync(self, conn: psycopg.Connection) -> None:
        if self._breakers is None:
            return
        while self._outbox:
            target, seconds, count, queued = self._outbox[0]
            left = seconds - (time.monotonic() - queued)
            if left > 0:
                conn.execute(PUBLISH, [target, self.replica, left, count])
            self._outbox.popleft()  # once written: a sync that fails publishes it next time
        rows = conn.execute(
            "SELECT target, replica, ejected_at, extract(epoch FROM until - now())::double precision "
            "FROM ejections WHERE until > now() AND replica <> %s",
            [self.replica],
        ).fetchall()
        for target, replica, ejected_at, seconds in rows:
            if self._followed.get(target) != (replica, ejected_at):
                self._followed[target] = (replica, ejected_at)
                self._breakers.follow(target, float(seconds))
