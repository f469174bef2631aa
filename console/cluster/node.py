"""One replica's part in the cluster: its shared ledger and limiter, and a sync job that
keeps keys, route stops, prompts, held tool calls and breaker ejections as PostgreSQL has
them and says the replica is alive.

Keys (hashes only, never tokens) and stops are written to PostgreSQL by the admin
action that makes them, then read by every replica's sync job every
`cluster_sync_interval_s` (0.25 s): a revoked key or a stopped route is refused by every
replica within a second. The job also runs prompts.py, approvals.py and breakers.py, on
a thread of its own with its own connection, off the gateway's event loop.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from console.cluster import schema, status
from console.cluster.approvals import SharedApprovals
from console.cluster.breakers import SharedBreakers
from console.cluster.ledger import FAILURES, Outage, SharedLedger
from console.cluster.limits import SharedLimiter
from console.cluster.prompts import SharedPrompts
from console.cluster.times import aware_utc, naive_utc
from console.errors import Unavailable
from console.gateway.budget import nanos_up, period_key
from console.gateway.key_admin import virtual_key
from console.gateway.keys import KeyRegistry
from console.gateway.oversight import RouteStops, Stop
from console.periodic import Periodic
from console.settings import Settings
from console.store import keys as key_rows
from console.store.audit import AuditEvent
from console.store.db import Database
from console.store.recorder import Recorder

log = logging.getLogger("fleetdeck.cluster")
PRUNE_EVERY = timedelta(minutes=1)
KEY_COLUMNS = key_rows.COLUMNS  # the same columns in PostgreSQL as in each DuckDB file

# A key created anywhere is published once; a revocation only ever sticks.
PUBLISH_KEY = (
    f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join(['%s'] * len(KEY_COLUMNS))}) "
    "ON CONFLICT (key_id) DO UPDATE SET revoked_at = coalesce(keys.revoked_at, excluded.revoked_at)"
)


def default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


RATE_LEASE_S = 600.0  # a concurrency slot whose replica died lapses after this (cluster_lease_s if set)


class Cluster:
    def __init__(
        self, settings: Settings, db: Database, recorder: Recorder, replica: str | None = None
    ) -> None:
        assert settings.cluster is not None
        self.conninfo, self.schema = settings.cluster, schema.check_schema_name(settings.cluster_schema)
        self.replica = replica or default_replica()
        self.url: str | None = None
        self.replicas: list[dict[str, Any]] = []  # as the last sync read them (`cluster status`'s rows)
        self._db, self._recorder = db, recorder
        self._wait_s = settings.cluster_wait_s
        self.ledger = SharedLedger(
            self.conninfo,
            self.schema,
            self.replica,
            wait_s=settings.cluster_wait_s,
            lease_s=settings.cluster_lease_s,
            on_outage_over=self._audit_outage,
        )
        self.limiter = SharedLimiter(
            self.conninfo,
            self.schema,
            self.replica,
            wait_s=settings.cluster_wait_s,
            lease_s=settings.cluster_lease_s or RATE_LEASE_S,
        )
        self.prompts = SharedPrompts(self.replica, self._admin_connection)
        self.approvals = SharedApprovals(self.replica, self._admin_connection)
        self.breakers = SharedBreakers(self.replica)
        self._registry: KeyRegistry | None = None
        self._stops: RouteStops | None = None
        self._local_keys: list[key_rows.KeyRow] = []
        self._store: str | None = None
        self._spent_before: dict[tuple[str, str], float] = {}
        self._next_prune = datetime.now(UTC)
        self._conn: psycopg.Connection | None = None
        self._started_at = datetime.now(UTC)
        self.schedule = Periodic("cluster-sync", self.tick)
        self.interval_s = settings.cluster_sync_interval_s

    def attach(
        self,
        registry: KeyRegistry,
        stops: RouteStops,
        local_keys: Iterable[key_rows.KeyRow],
        store: str,
        spent: Mapping[tuple[str, str], float],
    ) -> None:
        """The live registry and stops this replica's gateway reads; its own keys, to publish;
        its store's id and what it spent this day and month before joining, added once."""
        self._registry, self._stops, self._local_keys = registry, stops, list(local_keys)
        self._store, self._spent_before = store, dict(spent)

    def start(self) -> None:
        self.tick()  # keys and stops as the cluster has them before the first request
        self.schedule.start(self.interval_s)

    def stop(self) -> None:
        self.schedule.stop()
        if self._conn is not None:
            self.approvals.leave(self._conn)
            self._conn.close()
            self._conn = None

    # -- the sync job ------------------------------------------------------------------

    def tick(self) -> None:
        try:
            conn = self._connection()
            self._heartbeat(conn)
            self._read_keys(conn)
            self._read_stops(conn)
            for shared in (self.prompts, self.approvals, self.breakers):
                shared.sync(conn)
            self._read_ledger(conn)
            self.replicas = status.replicas(conn)
        except FAILURES as exc:
            self.ledger.note_unreachable(exc)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return
        self.ledger.note_reachable()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = self.connect()
            schema.migrate(conn, self.schema)
            self._use_schema(conn)
            for row in self._local_keys:
                try:
                    self._publish_keys(conn, [row])
                except psycopg.errors.UniqueViolation:  # a conflict, not an outage: say so, go on
                    log.warning("key %r is not shared: the cluster has another key of that name", row.name)
            self._seed(conn)
            self.prompts.publish(conn)
            self._conn = conn
        return self._conn

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=max(round(self._wait_s), 1))
        self._use_schema(conn)
        return conn

    def _use_schema(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    def _seed(self, conn: psycopg.Connection) -> None:
        """A store joining for the first time adds this day's and month's spend to the ledger."""
        if self._store is None:
            return
        with conn.transaction():
            joined = conn.execute(
                "INSERT INTO seeded (store) VALUES (%s) ON CONFLICT DO NOTHING", [self._store]
            ).rowcount
            for (scope, key), amount in self._spent_before.items() if joined else ():
                conn.execute(
                    "INSERT INTO buckets AS b (scope, period_key, spent) VALUES (%s, %s, %s) "
                    "ON CONFLICT (scope, period_key) DO UPDATE SET spent = b.spent + excluded.spent",
                    [scope, key, nanos_up(amount)],
                )

    def _heartbeat(self, conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO replicas (replica, url, started_at, seen_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (replica) DO UPDATE SET url = excluded.url, seen_at = now()",
            [self.replica, self.url, self._started_at],
        )

    def _read_keys(self, conn: psycopg.Connection) -> None:
        if self._registry is None:
            return
        found = conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM keys").fetchall()
        rows = {row.key_hash: row for row in map(_key_row, found)}
        changed = self._registry.merge({hashed: virtual_key(row) for hashed, row in rows.items()})
        for hashed in changed:  # kept here too: `keys list`, `keys revoke` and traces' key names
            key_rows.take(self._db.cursor(), rows[hashed])
        if changed:
            log.info("cluster: %d key(s) created or revoked elsewhere", len(changed))

    def _read_stops(self, conn: psycopg.Connection) -> None:
        if self._stops is None:
            return
        rows = conn.execute("SELECT route, actor, reason, stopped_at FROM route_stops").fetchall()
        stopped_at = {route: naive_utc(at) for route, _, _, at in rows}
        self._stops.replace(
            {
                route: Stop(actor, reason, stopped_at[route] or datetime.min)
                for route, actor, reason, _ in rows
            }
        )

    def _read_ledger(self, conn: psycopg.Connection) -> None:
        conn.execute("DELETE FROM holds WHERE expires_at < now()")
        now = datetime.now(UTC)
        if now >= self._next_prune:  # settlements are remembered for two days, to refuse a late retry
            conn.execute("DELETE FROM settled WHERE at < now() - interval '2 days'")
            self._next_prune = now + PRUNE_EVERY
        current = [period_key("day", now), period_key("month", now)]
        rows = conn.execute(
            "SELECT b.scope, b.period_key, b.spent, coalesce(sum(h.nanos), 0)::bigint FROM buckets b "
            "LEFT JOIN holds h ON h.scope = b.scope AND h.period_key = b.period_key "
            "WHERE b.period_key = ANY(%s) GROUP BY b.scope, b.period_key, b.spent",
            [current],
        ).fetchall()
        self.ledger.observe({(scope, key): (int(spent), int(held)) for scope, key, spent, held in rows})

    # -- what admin actions write (from the admin API's worker thread) ------------------

    def key_created(self, row: key_rows.KeyRow) -> None:
        with self._admin_connection() as conn:
            try:
                self._publish_keys(conn, [row])
            except psycopg.errors.UniqueViolation:
                raise ValueError(
                    f"a key named {row.name!r} exists already in the cluster; names are never reused"
                ) from None

    def key_revoked(self, row: key_rows.KeyRow, at: datetime) -> None:
        with self._admin_connection() as conn:
            conn.execute(
                "UPDATE keys SET revoked_at = coalesce(revoked_at, %s) WHERE key_hash = %s",
                [aware_utc(at), row.key_hash],
            )

    def route_stopped(self, route: str, stop: Stop) -> None:
        with self._admin_connection() as conn:
            conn.execute(
                "INSERT INTO route_stops VALUES (%s, %s, %s, %s) ON CONFLICT (route) DO UPDATE "
                "SET actor = excluded.actor, reason = excluded.reason, stopped_at = excluded.stopped_at",
                [route, stop.actor, stop.reason, aware_utc(stop.at)],
            )

    def route_resumed(self, route: str) -> None:
        with self._admin_connection() as conn:
            conn.execute("DELETE FROM route_stops WHERE route = %s", [route])

    def _admin_connection(self) -> psycopg.Connection:
        try:
            conn = self.connect()
            schema.migrate(conn, self.schema)
            self._use_schema(conn)
        except FAILURES as exc:
            raise Unavailable(
                f"the cluster's PostgreSQL at {self.ledger.where} cannot be reached ({exc}); "
                "the change was not made on any replica: retry once it is back",
                code="cluster_unavailable",
            ) from None
        return conn

    def _publish_keys(self, conn: psycopg.Connection, rows: Iterable[key_rows.KeyRow]) -> None:
        for row in rows:
            values = dict(zip(KEY_COLUMNS, row.values(), strict=True))
            values["created_at"], values["revoked_at"] = aware_utc(row.created_at), aware_utc(row.revoked_at)
            conn.execute(PUBLISH_KEY, list(values.values()))

    # -- audit -------------------------------------------------------------------------------

    def _audit_outage(self, outage: Outage, until: datetime) -> None:
        payload: dict[str, Any] = {
            "since": outage.since.isoformat(),
            "until": until.isoformat(),
            "seconds": round((until - outage.since).total_seconds(), 3),
            "reason": outage.reason,
            "refused_calls": outage.refused,
            "replica": self.replica,
        }
        self._recorder.record_audit(
            AuditEvent(
                actor="gateway",
                actor_kind="system",
                action="cluster.outage",
                subject=self.ledger.where,
                payload=payload,
            )
        )


def _key_row(found: tuple[Any, ...]) -> key_rows.KeyRow:
    values = dict(zip(KEY_COLUMNS, found, strict=True))
    values["created_at"] = naive_utc(values["created_at"])
    values["revoked_at"] = naive_utc(values["revoked_at"])
    return key_rows.KeyRow(**values)
