"""Prompt versions and pins shared by every replica, in PostgreSQL.

`prompts add` on any replica has the cluster number the version (`prompt_add()` in
console/cluster/schema.py), so `support@v3` is one text everywhere, and `prompts pin`
writes the pin there first; both are audited on the replica that made the change. Each
replica's sync job stores the versions it lacks (templates included) and follows the
cluster's pins, so a pin made anywhere is in force everywhere within a second. A store
joining the cluster publishes its own versions and pins; a version whose name and
number the cluster holds with another text stays this replica's own (logged), and the
cluster's pin of a prompt wins over a store's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg

from console.cluster.times import aware_utc, naive_utc
from console.gateway.prompts import PromptError, PromptRegistry, PromptVersion, version_number

log = logging.getLogger("fleetdeck.cluster")
VERSION_COLUMNS = "name, version, template, hash, created_at, author"


class SharedPrompts:
    def __init__(self, replica: str, admin_connection: Callable[[], psycopg.Connection]) -> None:
        self.replica, self._admin_connection = replica, admin_connection
        self._registry: PromptRegistry | None = None
        self._conflicts: set[tuple[str, str]] = set()  # logged once each

    def attach(self, registry: PromptRegistry) -> None:
        self._registry = registry

    # -- joining and the sync job ---------------------------------------------------------

    def publish(self, conn: psycopg.Connection) -> None:
        """This store's versions and pins, where the cluster has none by that name and number."""
        if self._registry is None:
            return
        for known in self._registry.known():
            conn.execute(
                "INSERT INTO prompt_versions (name, version, number, hash, template, created_at, author, "
                "replica) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [
                    *(known.name, known.version, version_number(known.version), known.hash),
                    *(known.template, aware_utc(known.created_at), known.author, self.replica),
                ],
            )
        for name, version in self._registry.pins().items():
            conn.execute(
                "INSERT INTO prompt_pins (name, version, actor, pinned_at, replica) "
                "SELECT %s, %s, 'store', now(), %s WHERE EXISTS (SELECT 1 FROM prompt_versions "
                "WHERE name = %s AND version = %s) ON CONFLICT (name) DO NOTHING",
                [name, version, self.replica, name, version],
            )

    def sync(self, conn: psycopg.Connection) -> None:
        """Store the versions added elsewhere; follow the cluster's pins."""
        registry = self._registry
        if registry is None:
            return
        pinned_before = registry.pinned_here
        found = conn.execute(  # one round trip: the versions (without templates), then the pins
            "SELECT name, version, hash FROM prompt_versions "
            "UNION ALL SELECT name, version, NULL FROM prompt_pins"
        ).fetchall()
        missing = self._missing(registry, [(n, v, digest) for n, v, digest in found if digest is not None])
        if missing:
            registry.take(self._fetch(conn, missing))
            log.info("cluster: %d prompt version(s) added elsewhere", len(missing))
        pins = {name: version for name, version, digest in found if digest is None}
        registry.follow_pins(pins, pinned_before)

    def _missing(self, registry: PromptRegistry, listed: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
        """The versions the cluster lists that this registry lacks; conflicts logged once."""
        missing = []
        for name, version, digest in listed:
            here = next((v for v in registry.versions(name) if v.version == version), None)
            if here is None:
                missing.append((name, version))
            elif here.hash != digest and (name, version) not in self._conflicts:
                self._conflicts.add((name, version))
                log.warning("prompt %s@%s is not shared: the cluster has another text as it", name, version)
        return missing

    def _fetch(self, conn: psycopg.Connection, refs: list[tuple[str, str]]) -> list[PromptVersion]:
        rows = conn.execute(
            f"SELECT {VERSION_COLUMNS} FROM prompt_versions JOIN unnest(%s::text[], %s::text[]) "
            "AS wanted (n, v) ON name = n AND version = v",
            [[name for name, _ in refs], [version for _, version in refs]],
        ).fetchall()
        return [_version(row) for row in rows]

    # -- what admin actions write (the admin API's worker thread, or the CLI) ----------------

    def prompt_added(
        self, name: str, template: str, digest: str, author: str, floor: int
    ) -> tuple[PromptVersion, bool]:
        with self._admin_connection() as conn:
            row = conn.execute(
                "SELECT o_version, o_created_at, o_author, o_added FROM prompt_add(%s, %s, %s, %s, %s, %s)",
                [name, digest, template, author, floor, self.replica],
            ).fetchone()
        assert row is not None
        version, created_at, first_author, added = row
        return PromptVersion(name, version, template, digest, naive_utc(created_at), first_author), added

    def prompt_pinned(self, name: str, version: str, actor: str) -> None:
        with self._admin_connection() as conn:
            try:
                conn.execute(
                    "INSERT INTO prompt_pins (name, version, actor, pinned_at, replica) "
                    "VALUES (%s, %s, %s, now(), %s) ON CONFLICT (name) DO UPDATE SET version = "
                    "excluded.version, actor = excluded.actor, pinned_at = excluded.pinned_at, "
                    "replica = excluded.replica",
                    [name, version, actor, self.replica],
                )
            except psycopg.errors.ForeignKeyViolation:
                raise PromptError(
                    f"prompt {name}@{version} is this replica's own (the cluster has another text as "
                    "that version, or none): pin a version the cluster shares",
                    code="prompt_refused",
                ) from None


def _version(row: tuple[Any, ...]) -> PromptVersion:
    name, version, template, digest, created_at, author = row
    return PromptVersion(name, version, template, digest, naive_utc(created_at), author)
