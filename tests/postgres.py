"""The test PostgreSQL (127.0.0.1:5432, database `test`, trust auth), for cluster-mode tests.

Tests that need it are marked `needs_postgresql`: skipped, with the reason, when no
server answers, so the single-box suite passes with none. Each test takes a schema of
its own (`fresh_schema`), dropped afterwards.
"""

from __future__ import annotations

import getpass
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

PG_HOST, PG_PORT, PG_DB = "127.0.0.1", 5432, "test"


def _reachable_user() -> str | None:
    for user in ("postgres", getpass.getuser()):
        try:
            with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DB, user=user, connect_timeout=2):
                return user
        except psycopg.Error:
            continue
    return None


PG_USER = _reachable_user()
needs_postgresql = pytest.mark.skipif(
    PG_USER is None, reason=f"no PostgreSQL reachable at {PG_HOST}:{PG_PORT}/{PG_DB} (cluster mode needs one)"
)


def pg_url(port: int = PG_PORT) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{port}/{PG_DB}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A schema name of the caller's own; the schema (if made) is dropped afterwards."""
    name = f"fleetdeck_test_{secrets.token_hex(6)}"
    try:
        yield name
    finally:
        with psycopg.connect(pg_url(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
