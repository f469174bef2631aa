"""Creating, listing and revoking virtual keys: the store, the live registry and the audit log.

The CLI runs these directly when no instance owns the database, and through the
admin API (`/_admin/keys`) when one does, so a revoked key is refused at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from console.clock import new_request_id, utc_now
from console.errors import Invalid
from console.gateway.keys import (
    KeyRegistry,
    VirtualKey,
    check_environment,
    check_key_name,
    new_key_token,
)
from console.store import keys as key_rows
from console.store.audit import AuditEvent
from console.store.db import Database
from console.store.recorder import Recorder

CONSOLE_KEY_NAME = "console-dev"
CONSOLE_KEY_SECRET = "console-dev-key"


def virtual_key(row: key_rows.KeyRow) -> VirtualKey:
    return VirtualKey(
        key_id=row.key_id,
        name=row.name,
        environment=row.environment,
        daily_cap=row.daily_cap,
        monthly_cap=row.monthly_cap,
        routes=tuple(row.routes) if row.routes is not None else None,
        revoked=row.revoked_at is not None,
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        concurrent=row.concurrent,
    )


class KeyMirror(Protocol):
    """Where else a key's creation and revocation go: the cluster's PostgreSQL (hashes only).
    Each raises a DomainError when it cannot, before the key changes here."""

    def key_created(self, row: key_rows.KeyRow) -> None: ...

    def key_revoked(self, row: key_rows.KeyRow, at: datetime) -> None: ...


class KeyAdmin:
    def __init__(self, db: Database, recorder: Recorder, registry: KeyRegistry) -> None:
        self._db, self._recorder, self.registry = db, recorder, registry
        self.mirror: KeyMirror | None = None

    @classmethod
    def open(cls, db: Database, recorder: Recorder, pepper: str) -> KeyAdmin:
        rows = key_rows.load(db.cursor())
        return cls(db, recorder, KeyRegistry(pepper, [(row.key_hash, virtual_key(row)) for row in rows]))

    def create(
        self,
        name: str,
        environment: str,
        *,
        daily_cap: float | None = None,
        monthly_cap: float | None = None,
        routes: Sequence[str] | None = None,
        rate_limits: Mapping[str, int | None] | None = None,
        actor: str = "cli",
    ) -> tuple[key_rows.KeyRow, str]:
        """Store a new key; returns its row and the key itself, which is never stored."""
        check_key_name(name)
        check_environment(environment)
        for cap in (daily_cap, monthly_cap):
            if cap is not None and not cap >= 0:
                raise ValueError(f"caps are USD amounts of 0 or more, not {cap}")
        limits = _rate_limits(rate_limits or {})
        token = new_key_token(environment)
        row = key_rows.KeyRow(
            key_id=f"k-{new_request_id().lower()}",
            name=name,
            environment=environment,
            key_hash=self.registry.hash_of(token),
            key_hint=token[-4:],
            daily_cap=daily_cap,
            monthly_cap=monthly_cap,
            routes=list(routes) if routes else None,
            created_at=utc_now(),
            created_by=actor,
            revoked_at=None,
            **limits,
        )
        key_rows.check_name_free(self._db.cursor(), name)
        if self.mirror is not None:
            self.mirror.key_created(row)
        key_rows.insert(self._db.cursor(), row)
        self.registry.add(row.key_hash, virtual_key(row))
        listing = row.listing()
        listing.pop("created_at")
        self._audit(actor, "key.created", name, listing)
        return row, token

    def revoke(self, name: str, actor: str = "cli") -> key_rows.KeyRow:
        if self.mirror is not None:
            found = [
                row for row in key_rows.load(self._db.cursor()) if row.name == name and not row.revoked_at
            ]
            if found:
                self.mirror.key_revoked(found[0], utc_now())
        row = key_rows.revoke(self._db.cursor(), name)
        self.registry.revoke(name)
        self._audit(actor, "key.revoked", name, {"key_id": row.key_id, "environment": row.environment})
        return row

    def listing(self) -> list[dict[str, Any]]:
        return [row.listing() for row in key_rows.load(self._db.cursor())]

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The admin API's `/_admin/keys`: `{"action": "create" | "revoke" | "list", …}`."""
        action, actor = request.get("action"), str(request.get("actor") or "admin-api")
        try:
            if action == "create":
                row, token = self.create(
                    str(request.get("name")),
                    str(request.get("environment")),
                    daily_cap=_amount(request.get("daily_cap")),
                    monthly_cap=_amount(request.get("monthly_cap")),
                    routes=request.get("routes") or None,
                    rate_limits={name: request.get(name) for name in RATE_LIMITS},
                    actor=actor,
                )
                return {"key": _jsonable(row.listing()), "token": token}
            if action == "revoke":
                return {"key": _jsonable(self.revoke(str(request.get("name")), actor).listing())}
            if action == "list":
                return {"keys": [_jsonable(row) for row in self.listing()]}
        except ValueError as exc:
            raise Invalid(str(exc), code="key_refused") from None
        raise Invalid("send {'action': 'create' | 'revoke' | 'list', …}", param="action")

    def _audit(self, actor: str, action: str, subject: str, payload: dict[str, Any]) -> None:
        self._recorder.record_audit(
            AuditEvent(actor=actor, actor_kind="human", action=action, subject=subject, payload=payload)
        )


RATE_LIMITS = ("requests_per_minute", "tokens_per_minute", "concurrent")


def _rate_limits(given: Mapping[str, object]) -> dict[str, int | None]:
    unknown = set(given) - set(RATE_LIMITS)
    if unknown:
        raise ValueError(f"unknown rate limit {sorted(unknown)[0]!r}: use {', '.join(RATE_LIMITS)}")
    limits: dict[str, int | None] = {}
    for name in RATE_LIMITS:
        value = given.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} is a whole number of 1 or more, not {value!r}")
        limits[name] = value
    return limits


def _amount(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"caps are USD amounts, not {value!r}")
    return float(value)


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
