"""The cache's entries in DuckDB (`cache_entries`): written by the cache's own writer
thread, loaded at start, deleted once expired."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from console.gateway.embedders import Vector
from console.store.db import Database

log = logging.getLogger("fleetdeck.cache")
Body = dict[str, Any]


@dataclass(slots=True)
class Entry:
    entry_id: str  # the request_id of the call whose answer it keeps
    exact_key: str
    scope: str | None
    route: str | None
    response: Body
    model: str | None
    cost_usd: float | None
    expires_at: float  # epoch seconds
    text: str | None = None  # the last user turn (kept in memory only, for the anchor check)
    vector: Vector | None = None
    embedder: str | None = None
    created_at: float = field(default_factory=time.time)


class StoredEntries:
    def __init__(self, db: Database) -> None:
        self._db = db

    def write(self, entries: list[Entry]) -> None:
        rows = [
            [
                e.entry_id,
                e.exact_key,
                e.scope,
                e.route,
                e.embedder,
                e.vector.tolist() if e.vector is not None else None,
                orjson.dumps(e.response).decode(),
                e.model,
                e.cost_usd,
                _timestamp(e.created_at),
                _timestamp(e.expires_at),
            ]
            for e in entries
        ]
        try:
            self._db.cursor().executemany(
                "INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
        except Exception:
            log.exception("could not write %d cache entries; they stay in memory", len(rows))

    def delete_expired(self, now: float) -> None:
        self._db.cursor().execute("DELETE FROM cache_entries WHERE expires_at <= ?", [_timestamp(now)])

    def load(self) -> list[Entry]:
        """The entries that have not expired, oldest first (the expired ones are deleted)."""
        cur = self._db.cursor()
        now = _timestamp(time.time())
        cur.execute("DELETE FROM cache_entries WHERE expires_at <= ?", [now])
        rows = cur.execute(
            "SELECT e.entry_id, e.exact_key, e.scope, e.route, e.embedder, e.vector, e.response, e.model, "
            "e.cost_usd, epoch(e.created_at), epoch(e.expires_at), "
            "json_extract_string(p.request, '$.messages[#-1].content') "
            "FROM cache_entries e LEFT JOIN payloads p ON p.payload_ref = e.entry_id "
            "ORDER BY e.created_at"
        ).fetchall()
        loaded = []
        for row in rows:
            entry = Entry(
                entry_id=row[0],
                exact_key=row[1],
                scope=row[2] if row[5] is not None else None,
                route=row[3],
                embedder=row[4],
                vector=np.asarray(row[5], dtype=np.float32) if row[5] is not None else None,
                response=orjson.loads(row[6]),
                model=row[7],
                cost_usd=row[8],
                created_at=float(row[9]),
                expires_at=float(row[10]),
                text=row[11],
            )
            loaded.append(entry)
        return loaded


def _timestamp(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)
