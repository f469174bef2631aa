"""One replica's part in the cluster: its shared ledger, and a sync job that keeps keys
and route stops as PostgreSQL has them and says the replica is alive.

Keys (hashes only, never tokens) and stops are written to PostgreSQL by the admin
action that makes them, then read by every replica's sync job every
`cluster_sync_interval_s` (0.25 s): a revoked key or a stopped route is refused by every
replica within a second. The job runs on a thread of its own with its own connection,
off the gateway's event loop. Rate limits and breakers stay per replica.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from console.cluster import schema
from console.cluster.ledger import FAILURES, Outage, SharedLedger
from console.errors import Unavailable
from console.gateway.key_admin import virtual_key
from console.gateway.keys import KeyRegistry, VirtualKey
from console.gateway.oversight import RouteStops, Stop
from console.periodic import Periodic
from console.settings import Settings
from console.store import keys as key_rows
from console.store.audit import AuditEvent
from console.store.recorder import Recorder

log = logging.getLogger("fleetdeck.cluster")
KEY_COLUMNS = (
    "key_hash",
    "key_id",
    "name",
    "environment",
    "daily_cap",
    "monthly_cap",
    "routes",
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent",
    "revoked_at",
)

# A key created anywhere is published once; a revocation only ever sticks.
PUBLISH_KEY = (
    f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join(['%s'] * len(KEY_COLUMNS))}) "
    "ON CONFLICT (key_hash) DO UPDATE SET revoked_at = coalesce(keys.revoked_at, excluded.revoked_at)"
)


def default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def naive_utc(at: datetime | None) -> datetime | None:
    return at.astimezone(UTC).replace(tzinfo=None) if at is not None and at.tzinfo else at


def aware_utc(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


class Cluster:
    def __init__(self, settings: Settings, recorder: Recorder, replica: str | None = None) -> None:
        assert settings.cluster is not None
        self.conninfo, self.schema = settings.cluster, schema.check_schema_name(settings.cluster_schema)
        self.replica = replica or default_replica()
        self.url: str | None = None
        self._recorder = recorder
        self._wait_s = settings.cluster_wait_s
        self.ledger = SharedLedger(
            self.conninfo,
            self.schema,
            self.replica,
            wait_s=settings.cluster_wait_s,
            lease_s=settings.cluster_lease_s,
            on_outage_over=self._audit_outage,
        )
        self._registry: KeyRegistry | None = None
        self._stops: RouteStops | None = None
        self._local_keys: list[key_rows.KeyRow] = []
        self._conn: psycopg.Connection | None = None
        self._started_at = datetime.now(UTC)
        self.schedule = Periodic("cluster-sync", self.tick)
        self.interval_s = settings.cluster_sync_interval_s

    def attach(self, registry: KeyRegistry, stops: RouteStops, local_keys: Iterable[key_rows.KeyRow]) -> None:
        """The live registry and stops this replica's gateway reads; its own keys, to publish."""
        self._registry, self._stops, self._local_keys = registry, stops, list(local_keys)

    def start(self) -> None:
        self.tick()  # keys and stops as the cluster has them before the first request
        self.schedule.start(self.interval_s)

    def stop(self) -> None:
        self.schedule.stop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the sync job ------------------------------------------------------------------

    def tick(self) -> None:
        try:
            conn = self._connection()
            self._heartbeat(conn)
            self._read_keys(conn)
            self._read_stops(conn)
            self._read_ledger(conn)
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
            self._publish_keys(conn, self._local_keys)
            self._conn = conn
        return self._conn

    def connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=max(round(self._wait_s), 1))
        self._use_schema(conn)
        return conn

    def _use_schema(self, conn: psycopg.Connection) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    def _heartbeat(self, conn: psycopg.Connection) -> None:
        conn.execute(
            "INSERT INTO replicas (replica, url, started_at, seen_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (replica) DO UPDATE SET url = excluded.url, seen_at = now()",
            [self.replica, self.url, self._started_at],
        )

    def _read_keys(self, conn: psycopg.Connection) -> None:
        if self._registry is None:
            return
        rows = conn.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM keys").fetchall()
        changed = self._registry.merge({row[0]: _virtual_key(row) for row in rows})
        if changed:
            log.info("cluster: %d key(s) created or revoked elsewhere", changed)

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
        conn.execute("DELETE FROM settled WHERE at < now() - interval '2 days'")
        rows = conn.execute(
            "SELECT b.scope, b.period_key, b.spent, coalesce(sum(h.nanos), 0)::bigint FROM buckets b "
            "LEFT JOIN holds h ON h.scope = b.scope AND h.period_key = b.period_key "
            "GROUP BY b.scope, b.period_key, b.spent"
        ).fetchall()
        self.ledger.observe({(scope, key): (int(spent), int(held)) for scope, key, spent, held in rows})

    # -- what admin actions write (from the admin API's worker thread) ------------------

    def key_created(self, row: key_rows.KeyRow) -> None:
        with self._admin_connection() as conn:
            self._publish_keys(conn, [row])

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
            values = [getattr(row, name) for name in KEY_COLUMNS]
            values[-1] = aware_utc(row.revoked_at)
            conn.execute(PUBLISH_KEY, values)

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


def _virtual_key(row: tuple[Any, ...]) -> VirtualKey:
    values = dict(zip(KEY_COLUMNS, row, strict=True))
    return virtual_key(
        key_rows.KeyRow(
            key_id=values["key_id"],
            name=values["name"],
            environment=values["environment"],
            key_hash=values["key_hash"],
            key_hint="",
            daily_cap=values["daily_cap"],
            monthly_cap=values["monthly_cap"],
            routes=values["routes"],
            created_at=datetime.min,
            created_by=None,
            revoked_at=naive_utc(values["revoked_at"]),
            requests_per_minute=values["requests_per_minute"],
            tokens_per_minute=values["tokens_per_minute"],
            concurrent=values["concurrent"],
        )
    )
