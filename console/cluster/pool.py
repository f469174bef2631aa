"""The psycopg connection pool the shared ledger and the shared limiter each open on the
cluster's schema: bounded waits, autocommit, opened without blocking the event loop."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

POOL_SIZE = 8


async def open_schema_pool(
    conninfo: str, schema: str, wait_s: float, name: str, min_size: int
) -> AsyncConnectionPool:
    """A pool whose connections use `schema`; it connects in the background (`wait=False`)."""

    async def use_schema(conn: psycopg.AsyncConnection) -> None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))

    pool = AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=POOL_SIZE,
        open=False,
        timeout=wait_s,
        reconnect_timeout=max(wait_s, 1.0),
        kwargs={"autocommit": True, "connect_timeout": max(round(wait_s), 1)},
        configure=use_schema,
        name=name,
    )
    await pool.open(wait=False)
    return pool
