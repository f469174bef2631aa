"""The audit trail: append-only, hash-chained entries.

An event is acknowledged on the recorder's spool like a trace; the recorder's writer
thread, the only one that appends, gives it the next sequence number and chains it.
Each entry stores the exact RFC 8785 canonical JSON it hashes, so verification needs
nothing but the rows: `hash = sha256(canonical)`, and `canonical` names the entry's
seq, ts, actor, action, subject, the sha256 of its payload and the previous hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import rfc8785

from console.store.trace import new_request_id, utc_now

GENESIS_HASH = "0" * 64
ACTOR_KINDS = ("human", "key", "system")


@dataclass(slots=True, kw_only=True)
class AuditEvent:
    """Who (actor, actor_kind) did what (action) to what (subject), and why (payload)."""

    actor: str
    actor_kind: str  # human | key | system
    action: str  # budget.exceeded, key.created, key.revoked, route.stopped, …
    subject: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    ts: datetime = field(default_factory=utc_now)
    event_id: str = field(default_factory=new_request_id)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A chained row of `audit_log`."""

    seq: int
    ts: datetime
    actor: str
    actor_kind: str
    action: str
    subject: str | None
    payload: dict[str, Any]
    event_id: str
    payload_hash: str
    prev_hash: str
    canonical: str
    hash: str

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def chain(event: AuditEvent, seq: int, prev_hash: str) -> AuditEntry:
    """The entry that appends `event` after the entry hashed `prev_hash`."""
    payload_hash = sha256(rfc8785.dumps(event.payload))
    signed: dict[str, Any] = {
        "seq": seq,
        "ts": event.ts.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "actor_kind": event.actor_kind,
        "action": event.action,
        "subject": event.subject,
        "event_id": event.event_id,
        "payload_hash": payload_hash,
        "prev_hash": prev_hash,
    }
    canonical: bytes = rfc8785.dumps(signed)
    return AuditEntry(
        seq=seq,
        ts=event.ts,
        actor=event.actor,
        actor_kind=event.actor_kind,
        action=event.action,
        subject=event.subject,
        payload=event.payload,
        event_id=event.event_id,
        payload_hash=payload_hash,
        prev_hash=prev_hash,
        canonical=canonical.decode(),
        hash=sha256(canonical),
    )


def head(cur: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    """The last entry's (seq, hash); (0, GENESIS_HASH) on an empty log."""
    row = cur.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchall()
    if not row:
        return 0, GENESIS_HASH
    return int(row[0][0]), str(row[0][1] or GENESIS_HASH)


def stored_event_ids(cur: duckdb.DuckDBPyConnection, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    rows = cur.execute("SELECT event_id FROM audit_log WHERE event_id IN ?", [event_ids]).fetchall()
    return {row[0] for row in rows}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
