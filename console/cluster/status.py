"""`fleetdeck cluster init|status`: the schema brought up to date, and what the cluster holds.

Both read PostgreSQL directly (no replica needs to run): the migration version, the
replicas seen through their heartbeats, keys and route stops, prompt pins, tool calls
held for a human and ejections in force, and the ledger's buckets of the current day
and month with what is spent and held.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from console.cluster import schema
from console.cluster.ledger import where
from console.gateway.budget import NANOS, period_key

ALIVE_WITHIN_S = 5.0  # a replica whose heartbeat is older than this is shown as gone
SHARED_SINCE = 3  # the migration that added prompts, approvals and ejections


def connect(conninfo: str, wait_s: float) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=max(round(wait_s), 1))
    except psycopg.Error as exc:
        raise ConnectionError(f"cannot reach the cluster's PostgreSQL at {where(conninfo)}: {exc}") from None


def init(conninfo: str, schema_name: str, wait_s: float = 5.0) -> dict[str, Any]:
    with connect(conninfo, wait_s) as conn:
        applied = schema.migrate(conn, schema_name)
        return {
            "postgresql": where(conninfo),
            "schema": schema_name,
            "version": schema.applied(conn, schema_name),
            "applied": applied,
        }


def status(conninfo: str, schema_name: str, wait_s: float = 5.0) -> dict[str, Any]:
    with connect(conninfo, wait_s) as conn:
        version = schema.applied(conn, schema_name)
        doc: dict[str, Any] = {
            "postgresql": where(conninfo),
            "schema": schema_name,
            "version": version,
            "latest": len(schema.MIGRATIONS),
        }
        if version == 0:
            return doc
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_name)))
        shared = _shared(conn) if version >= SHARED_SINCE else {}
        return doc | {"replicas": replicas(conn)} | _keys_and_stops(conn) | shared | _ledger(conn)


def replicas(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every replica that has sent a heartbeat, alive when it did within ALIVE_WITHIN_S."""
    rows = conn.execute(
        "SELECT replica, url, started_at, extract(epoch FROM now() - seen_at) FROM replicas ORDER BY replica"
    ).fetchall()
    return [
        {
            "replica": replica,
            "url": url,
            "started_at": started.isoformat(),
            "seen_s_ago": round(float(ago), 2),
            "alive": float(ago) <= ALIVE_WITHIN_S,
        }
        for replica, url, started, ago in rows
    ]


def _keys_and_stops(conn: psycopg.Connection) -> dict[str, Any]:
    keys = conn.execute("SELECT count(*), count(revoked_at) FROM keys").fetchone() or (0, 0)
    stops = conn.execute("SELECT route, actor, reason, stopped_at FROM route_stops ORDER BY route").fetchall()
    return {
        "keys": {"active": int(keys[0]) - int(keys[1]), "revoked": int(keys[1])},
        "route_stops": [
            {"route": route, "actor": actor, "reason": reason, "at": at.isoformat()}
            for route, actor, reason, at in stops
        ],
    }


def _shared(conn: psycopg.Connection) -> dict[str, Any]:
    pins = conn.execute("SELECT name, version, actor FROM prompt_pins ORDER BY name").fetchall()
    held = conn.execute("SELECT count(*) FROM approvals WHERE expires_at > now()").fetchone() or (0,)
    ejections = conn.execute(
        "SELECT target, replica, extract(epoch FROM until - now())::double precision FROM ejections "
        "WHERE until > now() ORDER BY target"
    ).fetchall()
    return {
        "prompt_pins": [{"name": name, "version": version, "by": actor} for name, version, actor in pins],
        "held_calls": int(held[0]),
        "ejections": [
            {"target": target, "replica": replica, "left_s": round(float(left), 1)}
            for target, replica, left in ejections
        ],
    }


def _ledger(conn: psycopg.Connection) -> dict[str, Any]:
    now = datetime.now(UTC)
    current = [period_key("day", now), period_key("month", now)]
    rows = conn.execute(
        "SELECT b.scope, b.period_key, b.spent, "
        "coalesce(sum(h.nanos) FILTER (WHERE h.expires_at > now()), 0), "
        "count(h.reservation) FILTER (WHERE h.expires_at > now()) FROM buckets b "
        "LEFT JOIN holds h ON h.scope = b.scope AND h.period_key = b.period_key "
        "WHERE b.period_key = ANY(%s) GROUP BY b.scope, b.period_key, b.spent ORDER BY b.scope, b.period_key",
        [current],
    ).fetchall()
    return {
        "ledger": [
            {
                "scope": scope,
                "period": key,
                "spent_usd": int(spent) / NANOS,
                "held_usd": int(held) / NANOS,
                "holds": int(holds),
            }
            for scope, key, spent, held, holds in rows
        ]
    }


def render(doc: dict[str, Any]) -> str:
    """`cluster status` as text."""
    lines = [f"PostgreSQL {doc['postgresql']}, schema {doc['schema']}: version {doc['version']}"]
    if doc["version"] == 0:
        return "\n".join([*lines, "Not initialised: run `fleetdeck cluster init`.", ""])
    if doc["version"] < doc["latest"]:
        lines.append(f"  migrations pending (latest {doc['latest']}): run `fleetdeck cluster init`")
    lines.append(f"Replicas ({sum(r['alive'] for r in doc['replicas'])} alive):")
    for r in doc["replicas"]:
        state = "alive" if r["alive"] else "gone"
        lines.append(f"  {r['replica']:<32} {state:<6} seen {r['seen_s_ago']:>8.2f} s ago  {r['url'] or ''}")
    keys = doc["keys"]
    lines.append(f"Keys: {keys['active']} active, {keys['revoked']} revoked")
    lines.append(f"Route stops: {len(doc['route_stops'])}")
    for stop in doc["route_stops"]:
        lines.append(f"  {stop['route']}: by {stop['actor']} at {stop['at']}: {stop['reason']}")
    if "prompt_pins" in doc:
        pins = ", ".join(f"{p['name']}@{p['version']}" for p in doc["prompt_pins"]) or "none"
        lines.append(f"Prompt pins: {pins}")
        lines.append(f"Tool calls held for a human: {doc['held_calls']}")
        lines.append(f"Ejections in force: {len(doc['ejections'])}")
        for e in doc["ejections"]:
            lines.append(f"  {e['target']}: by {e['replica']}, {e['left_s']:.1f} s left")
    lines.append("Ledger (this day and month):")
    for b in doc["ledger"]:
        lines.append(
            f"  {b['scope']:<40} {b['period']:<10} spent ${b['spent_usd']:.6f}  "
            f"held ${b['held_usd']:.6f} in {b['holds']} call(s)"
        )
    return "\n".join([*lines, ""])
