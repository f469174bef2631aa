"""The audit trail: append-only, hash-chained entries.

An event is acknowledged on the recorder's spool like a trace; the recorder's writer
thread gives it the next sequence number and chains it. The importer appends too (the
sample traces' log at first run, while the gateway already records): both hold
`CHAIN_LOCK` from reading the head until their entries are committed, so no two
appenders ever chain onto the same head.
Each entry stores the exact RFC 8785 canonical JSON it hashes, so verification needs
nothing but the rows: `hash = sha256(canonical)`, and `canonical` names the entry's
seq, ts, actor, action, subject, the sha256 of its payload and the previous hash.

Checkpoints sign the chain's size and head with an Ed25519 key and are kept both in
the database and in a file outside it; `verify` walks the chain and holds it against
them, so edits, deletions, reordering and truncation before a checkpoint are found.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from console.clock import new_request_id, utc_now

GENESIS_HASH = "0" * 64
CHAIN_LOCK = threading.RLock()  # held from reading the head until the appended entries commit
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


def append(cur: duckdb.DuckDBPyConnection, events: list[AuditEvent]) -> int:
    """Chain the events whose id is not stored yet after the log's head, in order; one insert.

    Outside a transaction the insert commits before `CHAIN_LOCK` is let go; a caller in a
    transaction holds the lock itself until it commits (see importer.import_files).
    """
    with CHAIN_LOCK:
        return _append(cur, events)


def _append(cur: duckdb.DuckDBPyConnection, events: list[AuditEvent]) -> int:
    stored = stored_event_ids(cur, [event.event_id for event in events])
    seq, prev_hash = head(cur)
    chained = []
    for event in events:
        if event.event_id in stored:
            continue
        row = chain(event, seq + 1, prev_hash).row()
        row["payload"] = orjson.dumps(row["payload"]).decode()
        chained.append(row)
        seq, prev_hash = row["seq"], row["hash"]
    if chained:
        cur.register("audit_batch", pa.Table.from_pylist(chained))
        try:
            cur.execute("INSERT INTO audit_log BY NAME SELECT * FROM audit_batch")
        finally:
            cur.unregister("audit_batch")
    return len(chained)


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


# -- checkpoints ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    head_hash: str
    ts: datetime
    public_key: str
    signature: str

    def signed_bytes(self) -> bytes:
        return checkpoint_message(self.seq, self.head_hash, self.ts)

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def line(self) -> bytes:
        return orjson.dumps({**self.row(), "ts": self.ts.isoformat(timespec="microseconds")}) + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> Checkpoint:
        found = orjson.loads(line)
        return cls(
            seq=int(found["seq"]),
            head_hash=str(found["head_hash"]),
            ts=datetime.fromisoformat(found["ts"]),
            public_key=str(found["public_key"]),
            signature=str(found["signature"]),
        )


def checkpoint_message(seq: int, head_hash: str, ts: datetime) -> bytes:
    signed: dict[str, Any] = {"seq": seq, "head_hash": head_hash, "ts": ts.isoformat(timespec="microseconds")}
    message: bytes = rfc8785.dumps(signed)
    return message


class Checkpointer:
    """Signs the chain's size and head every `every` entries or `interval_s` seconds."""

    def __init__(self, private_key: Ed25519PrivateKey, file: Path, every: int, interval_s: float) -> None:
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes_raw().hex()
        self._file, self._every, self._interval_s = file, every, interval_s
        self._last_seq: int | None = None
        self._last_at = time.monotonic()

    def due(self, cur: duckdb.DuckDBPyConnection, seq: int, force: bool = False) -> bool:
        if self._last_seq is None:
            row = cur.execute("SELECT max(seq) FROM audit_checkpoints").fetchall()
            self._last_seq = int(row[0][0] or 0)
        if seq <= self._last_seq:
            return False
        elapsed = time.monotonic() - self._last_at
        return force or seq - self._last_seq >= self._every or elapsed >= self._interval_s

    def sign(self, cur: duckdb.DuckDBPyConnection, seq: int, head_hash: str) -> Checkpoint:
        """Store a checkpoint in the database; `publish` then appends it to the file."""
        ts = utc_now()
        signature = self._key.sign(checkpoint_message(seq, head_hash, ts)).hex()
        checkpoint = Checkpoint(seq, head_hash, ts, self.public_key, signature)
        row = checkpoint.row()
        cur.execute(
            f"INSERT INTO audit_checkpoints ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        return checkpoint

    def publish(self, checkpoint: Checkpoint) -> None:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with self._file.open("ab") as f:
            f.write(checkpoint.line())
            f.flush()
            os.fsync(f.fileno())
        self._last_seq, self._last_at = checkpoint.seq, time.monotonic()


def signing_key(secret_hex: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret_hex))


def new_signing_secret() -> str:
    return Ed25519PrivateKey.generate().private_bytes_raw().hex()


# -- verification -----------------------------------------------------------------------

ENTRY_COLUMNS = (
    "seq, ts, actor, actor_kind, action, subject, payload, event_id, payload_hash, prev_hash, canonical, hash"
)


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def report(self) -> str:
        if self.ok:
            return f"audit chain holds: {self.entries} entries, {self.checkpoints} signed checkpoints"
        where = f"first bad entry: seq {self.first_bad_seq}; " if self.first_bad_seq is not None else ""
        return f"audit chain broken: {where}{self.problem}"


def verify(
    cur: duckdb.DuckDBPyConnection, checkpoint_file: Path | None = None, public_key: str | None = None
) -> Verification:
    """Walk the chain in seq order, then hold it against every signed checkpoint."""
    heads: dict[int, str] = {}
    prev_hash, count = GENESIS_HASH, 0
    result = cur.execute(f"SELECT {ENTRY_COLUMNS} FROM audit_log ORDER BY seq")
    while batch := result.fetchmany(10_000):
        for row in batch:
            count += 1
            problem = _entry_problem(row, count, prev_hash)
            if problem is not None:
                return Verification(count - 1, 0, count, problem)
            prev_hash = heads[count] = row[-1]
    checkpoints = _checkpoints(cur, checkpoint_file)
    return _against_checkpoints(heads, count, checkpoints, public_key)


def _entry_problem(row: tuple[Any, ...], expected_seq: int, prev_hash: str) -> str | None:
    seq, ts, actor, kind, action, subject, payload, event_id, payload_hash, prev, canonical, digest = row
    if seq != expected_seq:
        return f"expected seq {expected_seq}, found {seq}: an entry is missing or out of order"
    if prev != prev_hash:
        return "prev_hash does not match the previous entry's hash"
    signed = {
        "seq": seq,
        "ts": ts.isoformat(timespec="microseconds"),
        "actor": actor,
        "actor_kind": kind,
        "action": action,
        "subject": subject,
        "event_id": event_id,
        "payload_hash": payload_hash,
        "prev_hash": prev,
    }
    if canonical is None or rfc8785.dumps(signed).decode() != canonical:
        return "the entry's fields differ from the canonical JSON it was hashed as"
    if sha256(canonical.encode()) != digest:
        return "hash does not match the entry's canonical JSON"
    if payload is not None and _payload_hash(payload) != payload_hash:
        return "payload does not match its hash"
    return None


def _payload_hash(payload: str) -> str | None:
    try:
        return sha256(rfc8785.dumps(orjson.loads(payload)))
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


def _checkpoints(cur: duckdb.DuckDBPyConnection, file: Path | None) -> list[Checkpoint]:
    found = {
        Checkpoint(*row)
        for row in cur.execute(
            "SELECT seq, head_hash, ts, public_key, signature FROM audit_checkpoints ORDER BY seq"
        ).fetchall()
    }
    if file is not None and file.exists():
        for line in file.read_bytes().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                found.add(Checkpoint.from_line(line))
    return sorted(found, key=lambda c: (c.seq, c.ts))


def _against_checkpoints(
    heads: dict[int, str], count: int, checkpoints: list[Checkpoint], public_key: str | None
) -> Verification:
    good_through = 0
    for checkpoint in checkpoints:
        if not _signed_by(checkpoint, public_key):
            return Verification(
                count, len(checkpoints), None, f"checkpoint at seq {checkpoint.seq} is not validly signed"
            )
        if checkpoint.seq > count:
            return Verification(
                count,
                len(checkpoints),
                count + 1,
                f"a checkpoint signed {checkpoint.seq} entries but the log holds {count}: it was truncated",
            )
        if heads[checkpoint.seq] != checkpoint.head_hash:
            return Verification(
                count,
                len(checkpoints),
                good_through + 1,
                f"entries up to seq {checkpoint.seq} differ from the signed checkpoint: "
                "the chain was rewritten",
            )
        good_through = checkpoint.seq
    return Verification(count, len(checkpoints))


def _signed_by(checkpoint: Checkpoint, public_key: str | None) -> bool:
    if public_key is not None and checkpoint.public_key != public_key:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(checkpoint.public_key))
        key.verify(bytes.fromhex(checkpoint.signature), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


# -- retention --------------------------------------------------------------------------


def purge_payloads(cur: duckdb.DuckDBPyConnection, before: datetime) -> int:
    """Drop the payloads of entries older than `before`; their hashes keep the chain whole."""
    cur.execute("BEGIN")
    try:
        purged = clear_payloads(cur, before)
        cur.execute("COMMIT")
    except duckdb.Error:
        cur.execute("ROLLBACK")
        raise
    return purged


def clear_payloads(cur: duckdb.DuckDBPyConnection, before: datetime) -> int:
    """purge_payloads inside the caller's transaction (the update guard is lifted and put back)."""
    cur.execute("DROP TRIGGER audit_log_no_update ON audit_log")
    purged = cur.execute(
        "UPDATE audit_log SET payload = NULL WHERE ts < ? AND payload IS NOT NULL", [before]
    ).fetchall()
    cur.execute(UPDATE_GUARD)
    return int(purged[0][0]) if purged else 0


UPDATE_GUARD = (
    "CREATE TRIGGER audit_log_no_update AFTER UPDATE ON audit_log FOR EACH STATEMENT "
    "INSERT INTO audit_guard SELECT error('audit_log is append-only: entries cannot be updated')"
)
