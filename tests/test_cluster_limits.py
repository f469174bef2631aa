"""Rate limits shared by replicas (console/cluster/limits.py) over a real PostgreSQL: several
limiters (replicas' worth) on one schema admit exactly what one would, all or none across
limits, and a concurrency slot of a replica that died lapses with its lease."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Sequence

import psycopg
import pytest
from postgres import fresh_schema, needs_postgresql, pg_url

from console.cluster.limits import SharedLease, SharedLimiter
from console.cluster.schema import migrate
from console.gateway.limits import Held, Limit, LimitsUnavailable, Throttled

pytestmark = needs_postgresql


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        with psycopg.connect(pg_url(), autocommit=True) as conn:
            migrate(conn, name)
        yield name


def limiters(schema: str, n: int, lease_s: float = 60) -> list[SharedLimiter]:
    return [SharedLimiter(pg_url(), schema, f"r{i}", wait_s=5, lease_s=lease_s) for i in range(n)]


async def burst(
    fleet: Sequence[SharedLimiter], limits: list[Limit], n: int, tokens: int = 0
) -> list[Held | Throttled]:
    return await asyncio.gather(*(fleet[i % len(fleet)].acquire(limits, tokens) for i in range(n)))


async def close(fleet: Sequence[SharedLimiter]) -> None:
    for limiter in fleet:
        await limiter.aclose()


def pg(schema: str, statement: str) -> None:
    with psycopg.connect(pg_url(), autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(statement)


def test_300_admissions_over_three_replicas_against_60_requests_a_minute(schema: str) -> None:
    limit = Limit("key:k", requests=60, window_s=60)

    async def run() -> list[Held | Throttled]:
        fleet = limiters(schema, 3)
        found = await burst(fleet, [limit], 300)
        await close(fleet)
        return found

    found = asyncio.run(run())
    served = [r for r in found if isinstance(r, SharedLease)]
    refused = [r for r in found if isinstance(r, Throttled)]
    assert len(served) == 60 and len(refused) == 240
    # every admission saw a count of its own: remaining 59, 58, … 0, each once
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in served) == list(range(60))
    for r in refused:
        assert (r.scope, r.kind, r.limit) == ("key:k", "requests", 60)
        assert r.headers["x-ratelimit-limit-requests"] == "60"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert 0 < r.retry_after_s <= 60 and int(r.headers["retry-after"]) >= 1
        assert "retry-after-ms" in r.headers and "x-ratelimit-reset-requests" in r.headers


def test_limits_are_all_or_none_and_tokens_settle_to_the_real_count(schema: str) -> None:
    tight, loose = Limit("route:r", tokens=100), Limit("key:k", tokens=1000)

    async def run() -> None:
        fleet = limiters(schema, 2)
        first = await fleet[0].acquire([tight, loose], 80)
        assert isinstance(first, SharedLease)
        refused = await fleet[1].acquire([tight, loose], 30)
        assert isinstance(refused, Throttled) and (refused.scope, refused.kind) == ("route:r", "tokens")
        assert refused.headers["x-ratelimit-remaining-tokens"] == "20"
        first.release(20)  # settled: the call used 20 of the 80 taken up front
        await close(fleet)
        again = await fleet[1].acquire([tight, loose], 70)
        assert isinstance(again, SharedLease)
        assert again.headers["x-ratelimit-remaining-tokens"] == "10"  # 100 - 20 - 70
        never = await fleet[0].acquire([tight], 101)
        assert isinstance(never, Throttled) and never.retry_after_s == pytest.approx(60)
        await close(fleet)

    asyncio.run(run())
    with psycopg.connect(pg_url(), autocommit=True) as conn:
        rows = conn.execute(f"SELECT scope, sum(tokens) FROM {schema}.rate_takes GROUP BY scope").fetchall()
    assert dict(rows) == {"route:r": 90, "key:k": 90}  # the refused ones took nothing anywhere


def test_a_concurrency_limit_is_shared_and_a_dead_replicas_slot_lapses_with_its_lease(schema: str) -> None:
    limit = Limit("key:k", concurrent=3)

    async def run() -> None:
        fleet = limiters(schema, 3)
        found = await burst(fleet, [limit], 20)
        held = [r for r in found if isinstance(r, SharedLease)]
        assert len(held) == 3
        assert all(isinstance(r, Throttled) and r.kind == "concurrent" for r in found if r not in held)
        held[0].release(None)
        await close(fleet)
        after = await burst(fleet, [limit], 5)
        assert sum(isinstance(r, SharedLease) for r in after) == 1  # the one freed slot, once
        # the replicas holding the other three die; their leases run out
        pg(
            schema,
            "UPDATE rate_takes SET lease_until = now() - interval '1 second' WHERE lease_until IS NOT NULL",
        )
        fresh = await burst(fleet, [limit], 5)
        assert sum(isinstance(r, SharedLease) for r in fresh) == 3
        await close(fleet)

    asyncio.run(run())


def test_unreachable_postgresql_refuses_rather_than_admits() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    limiter = SharedLimiter(pg_url(port), "fleetdeck", "r0", wait_s=0.5, lease_s=60)

    async def run() -> None:
        with pytest.raises(LimitsUnavailable, match="rate limits"):
            await limiter.acquire([Limit("key:k", requests=1)], 0)
        await limiter.aclose()

    asyncio.run(run())
