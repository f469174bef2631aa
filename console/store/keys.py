"""Rows of `virtual_keys`: what the gateway loads at start and the key commands change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from console.clock import utc_now

COLUMNS = (
    "key_id",
    "name",
    "environment",
    "key_hash",
    "key_hint",
    "daily_cap",
    "monthly_cap",
    "routes",
    "created_at",
    "created_by",
    "revoked_at",
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent",
)


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    name: str
    environment: str
    key_hash: str
    key_hint: str
    daily_cap: float | None
    monthly_cap: float | None
    routes: list[str] | None
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent: int | None = None

    def values(self) -> list[Any]:
        """The row's values in COLUMNS order."""
        return [getattr(self, name) for name in COLUMNS]

    def listing(self) -> dict[str, Any]:
        """What `keys list` shows: everything but the hash."""
        return {name: getattr(self, name) for name in COLUMNS if name != "key_hash"}


def load(cur: duckdb.DuckDBPyConnection) -> list[KeyRow]:
    rows = cur.execute(f"SELECT {', '.join(COLUMNS)} FROM virtual_keys ORDER BY name").fetchall()
    return [KeyRow(*row) for row in rows]


def check_name_free(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    """ValueError when a key of that name exists (revoked names stay taken)."""
    taken = cur.execute("SELECT 1 FROM virtual_keys WHERE name = ?", [name]).fetchall()
    if taken:
        raise ValueError(f"a key named {name!r} exists already; names are never reused")


def insert(cur: duckdb.DuckDBPyConnection, row: KeyRow) -> None:
    """Store a new key; ValueError when its name is taken (revoked names stay taken)."""
    check_name_free(cur, row.name)
    values = [getattr(row, name) for name in COLUMNS]
    cur.execute(f"INSERT INTO virtual_keys VALUES ({', '.join('?' * len(COLUMNS))})", values)


def revoke(cur: duckdb.DuckDBPyConnection, name: str) -> KeyRow:
    """Mark a key revoked; ValueError when there is no such key or it is revoked already."""
    found = [row for row in load(cur) if row.name == name]
    if not found:
        raise ValueError(f"no key named {name!r} (see `fleetdeck keys list`)")
    if found[0].revoked_at is not None:
        raise ValueError(f"key {name!r} was revoked at {found[0].revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    cur.execute("UPDATE virtual_keys SET revoked_at = ? WHERE name = ?", [utc_now(), name])
    return found[0]


def take(cur: duckdb.DuckDBPyConnection, row: KeyRow) -> bool:
    """Keep a key another replica made (or its revocation) as the cluster has it; True if changed."""
    found = cur.execute("SELECT revoked_at FROM virtual_keys WHERE key_id = ?", [row.key_id]).fetchall()
    if not found:
        cur.execute(f"INSERT INTO virtual_keys VALUES ({', '.join('?' * len(COLUMNS))})", row.values())
        return True
    if found[0][0] is None and row.revoked_at is not None:
        cur.execute("UPDATE virtual_keys SET revoked_at = ? WHERE key_id = ?", [row.revoked_at, row.key_id])
        return True
    return False
