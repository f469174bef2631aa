"""Cluster mode over a real PostgreSQL: three `fleetdeck serve` replicas that behave as one.

Each test has a schema of its own in the `test` database (made and dropped here), so
tests are independent; without a reachable PostgreSQL they are skipped, and the
single-box suite needs no server. As in test_cost_controls.py, the fake upstream's
input price is 0 and every prompt is longer than `max_tokens`, so each served call
costs exactly its reserved worst case and "exactly 50 fit" holds whatever the timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from fakes.tcp_proxy import TcpProxy
from gateway_process import Served, create_key, fleetdeck_serve, run_cli, trace_of
from postgres import PG_HOST, PG_PORT, fresh_schema, needs_postgresql, pg_url

from console.clock import utc_now
from console.cluster.schema import MIGRATIONS
from console.gateway.admin import AdminEndpoint
from console.gateway.budget import NANOS, period_key
from console.secrets import PEPPER_NAME, secret_env_name

MAX_TOKENS = 10
OUTPUT_PRICE = 2.0  # USD per million output tokens
CALL_COST = MAX_TOKENS * OUTPUT_PRICE / 1_000_000
CAP = 50.5 * CALL_COST  # room for exactly 50 calls
LONG_PROMPT = [{"role": "user", "content": " ".join(f"w{i}" for i in range(3 * MAX_TOKENS))}]
POLICY = """
providers:
  lab:
    kind: openai_compat
    base_url: "{url}"
    models: [mock-gpt]
    prices: {{mock-gpt: {{input: 0, output: {output}}}}}
routes:
  - {{intent: capped, primary: lab/mock-gpt, max_retries: 0, timeouts: {{total_s: 60}}}}
  - {{intent: other, primary: lab/mock-gpt, max_retries: 0}}
default_route: capped
"""
LATEST = len(MIGRATIONS)
PROPAGATION_S = 1.0  # a revoked key or a stopped route is refused everywhere within this


pytestmark = needs_postgresql


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema of this test's own, dropped afterwards."""
    with fresh_schema() as name:
        yield name


@pytest.fixture
def pepper(monkeypatch: pytest.MonkeyPatch) -> str:
    """The key pepper every replica (and the test, creating keys) shares, as on one box's keyring."""
    value = secrets.token_urlsafe(32)
    monkeypatch.setenv(secret_env_name(PEPPER_NAME), value)
    return value


@pytest.fixture
def policy(upstream: FakeOpenAI) -> str:
    upstream.reset()
    return POLICY.format(url=upstream.base_url, output=OUTPUT_PRICE)


@contextmanager
def replicas(
    tmp_path: Path, policy: str, schema: str, n: int = 3, url: str | None = None, **env: str
) -> Iterator[list[Served]]:
    """`n` `fleetdeck serve` processes with data dirs of their own, sharing one PostgreSQL."""
    cluster_env = {
        "FLEETDECK_CLUSTER": url or pg_url(),
        "FLEETDECK_CLUSTER_SCHEMA": schema,
        "FLEETDECK_CLUSTER_WAIT_S": "1",
        **{f"FLEETDECK_{name.upper()}": value for name, value in env.items()},
    }
    with ExitStack() as stack:
        starting = [fleetdeck_serve(tmp_path / f"replica-{i}", policy, cluster_env) for i in range(n)]
        with ThreadPoolExecutor(n) as pool:  # they start side by side
            served = list(pool.map(lambda cm: cm.__enter__(), starting))
        for cm in starting:
            stack.push(cm.__exit__)
        yield served


def chat(served: Served, key: str, model: str = "route:capped", **body: Any) -> httpx.Response:
    payload = {"model": model, "messages": LONG_PROMPT, "max_tokens": MAX_TOKENS, **body}
    return httpx.post(
        f"{served.base_url}/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def burst(fleet: Sequence[Served], key: str, n: int, **body: Any) -> list[httpx.Response]:
    """`n` chat requests at once, spread over the replicas, each on its own connection."""

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            payload = {"model": "route:capped", "messages": LONG_PROMPT, "max_tokens": MAX_TOKENS, **body}
            headers = {"Authorization": f"Bearer {key}"}
            urls = [f"{fleet[i % len(fleet)].base_url}/chat/completions" for i in range(n)]
            return await asyncio.gather(*(client.post(url, json=payload, headers=headers) for url in urls))

    return asyncio.run(send_all())


def outcome_counts(responses: Sequence[httpx.Response]) -> Counter[str]:
    return Counter("served" if r.status_code == 200 else r.json()["error"]["code"] for r in responses)


def wait_until(check: Callable[[], bool], deadline_s: float, what: str) -> float:
    """Poll `check` until it holds; the seconds it took. Fails past the deadline."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline_s:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


def query(served: Served, sql: str) -> list[dict[str, Any]]:
    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None, "the replica published no admin endpoint"
    return list(endpoint.query({"sql": sql}).to_pylist())


def pg(schema: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url(), autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def key_id(schema: str, name: str) -> str:
    return str(pg(schema, "SELECT key_id FROM keys WHERE name = %s", [name])[0][0])


def authenticated(served: Served, key: str) -> int:
    """The status of a bodyless call: 401 when the replica refuses the key, else 400 (and no cost)."""
    response = httpx.post(
        f"{served.base_url}/chat/completions", content=b"{}", headers={"Authorization": f"Bearer {key}"}
    )
    return response.status_code


def accepted_everywhere(fleet: Sequence[Served], key: str) -> Callable[[], bool]:
    return lambda: all(authenticated(s, key) != 401 for s in fleet)


def traces_of(fleet: Sequence[Served], key: str) -> list[dict[str, Any]]:
    """The key's calls that reached the ledger (probes without a body did not), on every replica."""
    sql = (
        "SELECT status, cost_usd, http_status FROM traces "
        f"WHERE key_id = '{key}' AND status IN ('ok', 'over_budget')"
    )
    return [row for served in fleet for row in query(served, sql)]


def spent_nanos(schema: str, scope: str) -> int:
    """What the shared ledger has settled for `scope` this UTC day."""
    today = period_key("day", utc_now())
    rows = pg(schema, "SELECT spent FROM buckets WHERE scope = %s AND period_key = %s", [scope, today])
    return sum(int(row[0]) for row in rows)


def held_nanos(schema: str) -> int:
    rows = pg(schema, "SELECT coalesce(sum(nanos), 0) FROM holds WHERE expires_at > now()")
    return int(rows[0][0])


@contextmanager
def capped_fleet(
    tmp_path: Path, policy: str, schema: str, **env: str
) -> Iterator[tuple[list[Served], str, str]]:
    """Three replicas and a key capped for 50 calls, known to all three."""
    token = create_key(tmp_path / "replica-0", "capped", daily_cap=CAP)
    with replicas(tmp_path, policy, schema, **env) as fleet:
        wait_until(accepted_everywhere(fleet, token), 10, "the capped key reached every replica")
        yield fleet, token, key_id(schema, "capped")


@pytest.mark.usefixtures("pepper")
def test_200_calls_over_three_replicas_against_a_cap_for_50(tmp_path: Path, policy: str, schema: str) -> None:
    with capped_fleet(tmp_path, policy, schema) as (fleet, token, kid):
        responses = burst(fleet, token, 200)
        assert outcome_counts(responses) == {"served": 50, "budget_exceeded": 150}
        # Requests went round the three replicas: a cap split per replica would have served up
        # to 150. Which replicas won the 50 depends on timing, so it is not asserted.
        wait_until(lambda: len(traces_of(fleet, kid)) == 200, 20, "200 traces across the three")
        rows = traces_of(fleet, kid)
        assert sum(r["cost_usd"] or 0 for r in rows) <= CAP
        assert Counter(r["status"] for r in rows) == {"ok": 50, "over_budget": 150}
        wait_until(lambda: held_nanos(schema) == 0, 10, "every hold settled")
        assert spent_nanos(schema, f"key:{kid}") == round(50 * CALL_COST * NANOS)


@pytest.mark.usefixtures("pepper")
def test_the_same_with_streams(tmp_path: Path, policy: str, schema: str) -> None:
    with capped_fleet(tmp_path, policy, schema) as (fleet, token, kid):
        responses = burst(fleet, token, 200, stream=True)
        assert outcome_counts(responses) == {"served": 50, "budget_exceeded": 150}
        for response in responses:
            if response.status_code == 200:
                assert response.text.rstrip().endswith("data: [DONE]")
        wait_until(lambda: len(traces_of(fleet, kid)) == 200, 20, "200 traces across the three")
        rows = traces_of(fleet, kid)
        assert sum(r["cost_usd"] or 0 for r in rows) <= CAP
        assert Counter(r["status"] for r in rows) == {"ok": 50, "over_budget": 150}
        wait_until(lambda: held_nanos(schema) == 0, 10, "every hold settled")
        assert spent_nanos(schema, f"key:{kid}") == round(50 * CALL_COST * NANOS)


def refused_everywhere(fleet: Sequence[Served], call: Callable[[Served], httpx.Response], code: str) -> bool:
    answers = [call(served) for served in fleet]
    return all(a.status_code != 200 and a.json()["error"]["code"] == code for a in answers)


@pytest.mark.usefixtures("pepper")
def test_a_revoked_key_and_a_stopped_route_reach_all_three_within_a_second(
    tmp_path: Path, policy: str, schema: str
) -> None:
    doomed = create_key(tmp_path / "replica-0", "doomed")
    with replicas(tmp_path, policy, schema) as fleet:
        wait_until(accepted_everywhere(fleet, doomed), 10, "the key reached every replica")
        assert all(chat(served, doomed).status_code == 200 for served in fleet)

        created = run_cli(fleet[2].data_dir, "keys", "create", "--name", "late", "--env", "dev")
        assert created.returncode == 0, created.stderr
        late = created.stdout.strip()
        took = wait_until(accepted_everywhere(fleet, late), 5, "a key made on a running replica")
        assert took <= PROPAGATION_S, f"a new key took {took:.2f} s to reach every replica"
        taken = run_cli(fleet[0].data_dir, "keys", "create", "--name", "late", "--env", "dev")
        assert taken.returncode != 0 and "exists already" in taken.stderr  # names are cluster-wide

        revoked = run_cli(fleet[1].data_dir, "keys", "revoke", "doomed")  # not where it was made
        assert revoked.returncode == 0, revoked.stderr
        took = wait_until(
            lambda: all(authenticated(served, doomed) == 401 for served in fleet), 5, "the revocation"
        )
        assert took <= PROPAGATION_S, f"revocation took {took:.2f} s to reach every replica"
        answer = chat(fleet[2], doomed)
        assert answer.status_code == 401 and "revoked" in answer.json()["error"]["message"]

        stopped = run_cli(fleet[1].data_dir, "routes", "stop", "other", "--reason", "upstream incident")
        assert stopped.returncode == 0, stopped.stderr
        other = lambda served: chat(served, served.key, model="route:other")  # noqa: E731
        took = wait_until(lambda: refused_everywhere(fleet, other, "route_stopped"), 5, "the stop")
        assert took <= PROPAGATION_S, f"the stop took {took:.2f} s to reach every replica"
        assert "upstream incident" in other(fleet[0]).json()["error"]["message"]
        assert all(chat(served, served.key).status_code == 200 for served in fleet)  # other routes serve

        resumed = run_cli(fleet[2].data_dir, "routes", "resume", "other")
        assert resumed.returncode == 0, resumed.stderr
        took = wait_until(lambda: all(other(s).status_code == 200 for s in fleet), 5, "the resume")
        assert took <= PROPAGATION_S

        status = cluster_cli(schema, "status", "--format", "json")
        assert status.returncode == 0, status.stderr
        doc = orjson.loads(status.stdout)
        assert [r["alive"] for r in doc["replicas"]] == [True, True, True]
        assert {r["url"] for r in doc["replicas"]} == {served.url for served in fleet}
        assert doc["keys"] == {"active": 4, "revoked": 1}  # each replica's own test key, `late`; `doomed`
        listed = run_cli(fleet[2].data_dir, "keys", "list")
        assert "doomed" in listed.stdout and "late" in listed.stdout  # every replica keeps every key
        assert doc["route_stops"] == []


def cluster_cli(schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return fleetdeck_cli(schema, "cluster", *args, "--cluster", pg_url())


def fleetdeck_cli(schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`fleetdeck ARGS` with the cluster's settings in its environment."""
    env = {**os.environ, "FLEETDECK_CLUSTER": pg_url(), "FLEETDECK_CLUSTER_SCHEMA": schema}
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_cluster_init_migrates_once_and_status_says_what_is_missing(schema: str, tmp_path: Path) -> None:
    before = cluster_cli(schema, "status")
    assert before.returncode == 0 and "Not initialised: run `fleetdeck cluster init`" in before.stdout
    first, again = cluster_cli(schema, "init"), cluster_cli(schema, "init")
    assert f"version {LATEST} ({LATEST} migration(s) applied)" in first.stdout, first.stderr
    assert f"version {LATEST} (0 migration(s) applied)" in again.stdout, again.stderr
    doc = orjson.loads(cluster_cli(schema, "status", "--format", "json").stdout)
    assert doc["version"] == doc["latest"] == LATEST and doc["replicas"] == [] and doc["ledger"] == []

    # with no replica running, key and stop changes made from the command line go to the cluster too
    data = str(tmp_path / "offline")
    made = fleetdeck_cli(schema, "keys", "create", "--name", "offline", "--env", "dev", "--data-dir", data)
    assert made.returncode == 0, made.stderr
    stopped = fleetdeck_cli(schema, "routes", "stop", "general", "--reason", "audit", "--data-dir", data)
    assert stopped.returncode == 0, stopped.stderr
    doc = orjson.loads(cluster_cli(schema, "status", "--format", "json").stdout)
    assert doc["keys"] == {"active": 1, "revoked": 0}
    assert [(s["route"], s["reason"]) for s in doc["route_stops"]] == [("general", "audit")]
    unreachable = subprocess.run(
        [
            sys.executable,
            "-m",
            "console",
            "cluster",
            "status",
            "--cluster",
            "postgresql://u:sekret@127.0.0.1:1/x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 1 and "cannot reach the cluster's PostgreSQL at 127.0.0.1:1/x" in (
        unreachable.stderr
    )
    assert "sekret" not in unreachable.stderr + unreachable.stdout


@pytest.mark.usefixtures("pepper")
def test_a_replica_killed_mid_call_leaks_no_reservation_past_its_expiry(
    tmp_path: Path, policy: str, schema: str, upstream: FakeOpenAI
) -> None:
    token = create_key(tmp_path / "replica-0", "one-call", daily_cap=1.5 * CALL_COST)
    with replicas(tmp_path, policy, schema, n=2, cluster_lease_s="3") as (victim, survivor):
        wait_until(accepted_everywhere([victim, survivor], token), 10, "the key reached both replicas")
        upstream.push(Fault(delay_s=60))  # the victim's call hangs upstream
        hung = threading.Thread(target=lambda: _ignore_errors(lambda: chat(victim, token)), daemon=True)
        hung.start()
        assert upstream.wait_until(lambda: upstream.request_count == 1, 10), "the victim's call upstream"
        assert held_nanos(schema) > 0  # reserved before it went upstream
        victim.kill()

        held_by_the_dead = chat(survivor, token)  # the hold still counts until it lapses
        assert held_by_the_dead.status_code == 429
        assert held_by_the_dead.json()["error"]["code"] == "budget_exceeded"
        (expires,) = pg(schema, "SELECT max(expires_at) - now() FROM holds")[0]
        assert expires.total_seconds() <= 3
        wait_until(lambda: held_nanos(schema) == 0, 10, "the dead replica's hold lapsing")
        assert chat(survivor, token).status_code == 200  # the whole cap is back: nothing leaked
        assert chat(survivor, token).status_code == 429  # and it still holds
        hung.join(timeout=1)


def _ignore_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the replica is killed under it
        call()


@pytest.mark.usefixtures("pepper")
def test_postgresql_cut_during_traffic_fails_capped_keys_closed_and_recovers_without_a_restart(
    tmp_path: Path, policy: str, schema: str
) -> None:
    capped = create_key(tmp_path / "replica-0", "capped", daily_cap=CAP)
    free = create_key(tmp_path / "replica-0", "free")
    with (
        TcpProxy(PG_HOST, PG_PORT) as proxy,
        replicas(tmp_path, policy, schema, url=pg_url(proxy.port)) as fleet,
    ):
        wait_until(accepted_everywhere(fleet, capped), 10, "the keys reached every replica")
        before = burst(fleet, capped, 10)
        assert outcome_counts(before) == {"served": 10}
        wait_until(lambda: held_nanos(schema) == 0, 10, "the first calls settled")

        proxy.cut()
        during = burst(fleet, capped, 30)
        assert outcome_counts(during) == {"ledger_unavailable": 30}  # none served unbudgeted
        assert {r.status_code for r in during} == {503}
        message = during[0].json()["error"]["message"]
        assert "unreachable" in message and "refused" in message and "no restart" in message
        assert all(chat(served, free).status_code == 200 for served in fleet)  # uncapped: served

        proxy.restore()
        recovering: list[httpx.Response] = []

        def served_again() -> bool:
            recovering.append(chat(fleet[len(recovering) % 3], capped))
            return recovering[-1].status_code == 200

        wait_until(served_again, 30, "a capped call served again")
        assert {r.status_code for r in recovering} <= {200, 503}
        after = burst(fleet, capped, 100)
        served = [r for r in [*before, *recovering, *after] if r.status_code == 200]
        assert len(served) == 50  # exactly the cap, outage or not

        outage_sql = "SELECT payload FROM audit_log WHERE action = 'cluster.outage'"
        wait_until(lambda: all(query(s, outage_sql) for s in fleet), 20, "each replica audited the outage")
        audited = [orjson.loads(row["payload"]) for s in fleet for row in query(s, outage_sql)]
        assert sum(entry["refused_calls"] for entry in audited) >= 30
        assert all(entry["seconds"] > 0 and entry["until"] > entry["since"] for entry in audited)


@pytest.mark.usefixtures("pepper")
def test_uncapped_keys_follow_the_setting_while_postgresql_is_away(
    tmp_path: Path, policy: str, schema: str
) -> None:
    free = create_key(tmp_path / "replica-0", "free")
    with (
        TcpProxy(PG_HOST, PG_PORT) as proxy,
        replicas(tmp_path, policy, schema, n=1, url=pg_url(proxy.port), cluster_uncapped="refuse") as fleet,
    ):
        (served,) = fleet
        wait_until(accepted_everywhere(fleet, free), 10, "the key reached the replica")
        assert chat(served, free).status_code == 200
        proxy.cut()
        wait_until(lambda: chat(served, free).status_code == 503, 10, "the replica noticing the outage")
        refused = chat(served, free).json()["error"]
        assert refused["code"] == "ledger_unavailable" and "unreachable" in refused["message"]
        proxy.restore()
        wait_until(lambda: chat(served, free).status_code == 200, 30, "uncapped calls served again")


@pytest.mark.usefixtures("pepper")
def test_a_single_box_joining_brings_what_it_spent_today_once(
    tmp_path: Path, policy: str, schema: str
) -> None:
    token = create_key(tmp_path / "replica-0", "capped", daily_cap=CAP)
    with fleetdeck_serve(tmp_path / "replica-0", policy) as alone:  # one box, no cluster yet
        assert outcome_counts(burst([alone], token, 20)) == {"served": 20}
    with replicas(tmp_path, policy, schema, n=2) as fleet:
        wait_until(accepted_everywhere(fleet, token), 10, "the key reached both replicas")
        assert spent_nanos(schema, f"key:{key_id(schema, 'capped')}") == round(20 * CALL_COST * NANOS)
        assert outcome_counts(burst(fleet, token, 10)) == {"served": 10}
    with replicas(tmp_path, policy, schema, n=2) as fleet:  # rejoining adds nothing twice
        wait_until(accepted_everywhere(fleet, token), 10, "the key reached both replicas")
        assert outcome_counts(burst(fleet, token, 40)) == {"served": 20, "budget_exceeded": 20}


def test_two_ledgers_reserve_all_or_none_across_caps_and_settle_once(schema: str) -> None:
    """The ledger itself, two of them (two replicas' worth) on one schema: key A's cap has room
    for 10 units, the route they share for 15; every reservation holds on all its caps or none."""
    from console.cluster.ledger import SharedLedger
    from console.cluster.schema import migrate
    from console.gateway.budget import Cap, Refusal, Reservation

    with psycopg.connect(pg_url(), autocommit=True) as conn:
        migrate(conn, schema)
    unit = 1e-6
    route = Cap("route:shared", "day", 15.5 * unit)
    caps_a = [Cap("key:a", "day", 10.5 * unit), route]
    caps_b = [Cap("key:b", "month", 100 * unit), route]

    async def run() -> tuple[list[Reservation | Refusal], list[Reservation | Refusal]]:
        ledgers = [
            SharedLedger(pg_url(), schema, f"r{i}", wait_s=5, lease_s=None, on_outage_over=lambda o, u: None)
            for i in range(2)
        ]
        calls_a = [ledgers[i % 2].reserve(caps_a, unit, 60) for i in range(40)]
        calls_b = [ledgers[i % 2].reserve(caps_b, unit, 60) for i in range(40)]
        found = await asyncio.gather(*calls_a, *calls_b)
        held = [r for r in found if isinstance(r, Reservation)]
        full = await asyncio.gather(*(ledger.reserve([route], unit, 60) for ledger in ledgers))
        assert all(isinstance(r, Refusal) and r.cap == route for r in full)  # no room left on either
        for i, reservation in enumerate(held):
            ledgers[i % 2].settle(reservation, unit)
            ledgers[i % 2].settle(reservation, unit)  # a second settle adds nothing
        for ledger in ledgers:
            await ledger.aclose()
        return found[:40], found[40:]

    a, b = asyncio.run(run())
    held_a = [r for r in a if isinstance(r, Reservation)]
    held_b = [r for r in b if isinstance(r, Reservation)]
    assert len(held_a) <= 10 and len(held_a) + len(held_b) == 15  # the route's room, exactly
    refusals = [r for r in [*a, *b] if isinstance(r, Refusal)]
    assert {r.cap.scope for r in refusals} <= {"key:a", "route:shared"}
    assert pg(schema, "SELECT count(*) FROM holds") == [(0,)]  # refused ones held nothing; the rest settled
    spent = dict(pg(schema, "SELECT scope, spent FROM buckets"))
    assert spent["route:shared"] == 15 * 1000 and spent["key:a"] == len(held_a) * 1000
    assert spent["key:b"] == len(held_b) * 1000


@pytest.mark.usefixtures("pepper")
def test_300_calls_over_three_replicas_against_60_requests_a_minute(
    tmp_path: Path, policy: str, schema: str
) -> None:
    """The key's rate limit is counted in PostgreSQL: 60 served across the three, not 60 each."""
    token = create_key(tmp_path / "replica-0", "limited", rate_limits={"requests_per_minute": 60})
    with replicas(tmp_path, policy, schema) as fleet:
        wait_until(accepted_everywhere(fleet, token), 10, "the limited key reached every replica")
        used = len(pg(schema, "SELECT 1 FROM rate_takes"))  # the probes of accepted_everywhere
        responses = burst(fleet, token, 300)
    counts = outcome_counts(responses)
    assert counts == {"served": 60 - used, "rate_limit_exceeded": 240 + used}
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.headers["x-ratelimit-limit-requests"] == "60"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert int(refused.headers["retry-after"]) >= 1


# -- prompts, approvals and breakers, shared -------------------------------------------------

FRIENDLY = "You answer for {{company}}. Be friendly."
TERSE = "You answer for {{company}}. Be terse."


def prompted(served: Served, upstream: FakeOpenAI) -> str:
    """The system message the gateway put in front of a call naming the prompt `support` alone."""
    body = {
        "model": "route:other",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"company": "Acme"},
    }
    headers = {**served.auth, "X-Fleetdeck-Prompt": "support"}
    answer = httpx.post(f"{served.base_url}/chat/completions", json=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(upstream.last_request.body["messages"][0]["content"])


def prompt_cli(served: Served, *args: str) -> str:
    done = run_cli(served.data_dir, "prompts", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def audited(served: Served, action: str) -> list[dict[str, Any]]:
    return query(
        served, f"SELECT subject, actor, actor_kind, payload FROM audit_log WHERE action = '{action}'"
    )


@pytest.mark.usefixtures("pepper")
def test_a_prompt_pinned_on_one_replica_is_followed_by_the_other_within_a_second(
    tmp_path: Path, policy: str, schema: str, upstream: FakeOpenAI
) -> None:
    (tmp_path / "friendly.txt").write_text(FRIENDLY)
    (tmp_path / "terse.txt").write_text(TERSE)
    with replicas(tmp_path, policy, schema, n=2) as (first, second):
        assert "v1 added" in prompt_cli(first, "add", "support", str(tmp_path / "friendly.txt"))
        # numbered by the cluster, so v2 names one text everywhere, whichever replica adds it
        assert "v2 added" in prompt_cli(second, "add", "support", str(tmp_path / "terse.txt"))
        wait_until(lambda: prompted(first, upstream).endswith("terse."), 5, "the first replica has v2")
        assert prompted(second, upstream) == "You answer for Acme. Be terse."  # nothing pinned: the latest
        assert "is v2 already" in prompt_cli(first, "add", "support", str(tmp_path / "terse.txt"))

        assert "pinned to v1" in prompt_cli(first, "pin", "support", "v1")
        took = wait_until(lambda: prompted(second, upstream).endswith("friendly."), 5, "the pin on the other")
        assert took <= PROPAGATION_S, f"the pin took {took:.2f} s to reach the other replica"
        assert "pinned to v2 (was v1)" in prompt_cli(second, "pin", "support", "v2")  # a rollback
        took = wait_until(lambda: prompted(first, upstream).endswith("terse."), 5, "the pin back")
        assert took <= PROPAGATION_S

        stored = "SELECT version, template FROM prompts WHERE name = 'support' ORDER BY version"
        for served in (first, second):  # each store keeps every version, templates included
            assert [(r["version"], r["template"]) for r in query(served, stored)] == [
                ("v1", FRIENDLY),
                ("v2", TERSE),
            ]
        # audited where the change was made, once
        wait_until(lambda: len(audited(first, "prompt.pin")) == 1, 10, "the first replica's pin audited")
        wait_until(lambda: len(audited(second, "prompt.pin")) == 1, 10, "the second replica's pin audited")
        assert [r["subject"] for r in audited(first, "prompt.pin")] == ["prompt:support@v1"]
        assert [r["subject"] for r in audited(second, "prompt.pin")] == ["prompt:support@v2"]
        assert [r["subject"] for r in audited(first, "prompt.added")] == ["prompt:support@v1"]
        assert [r["subject"] for r in audited(second, "prompt.added")] == ["prompt:support@v2"]
    doc = orjson.loads(cluster_cli(schema, "status", "--format", "json").stdout)
    assert [(p["name"], p["version"]) for p in doc["prompt_pins"]] == [("support", "v2")]
    assert doc["held_calls"] == 0 and doc["ejections"] == []


APPROVAL_POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", models: [mock-gpt]}}
routes:
  - intent: refunds
    primary: lab/mock-gpt
    max_retries: 0
    timeouts: {{total_s: {total_s}}}
    tools: {{approval: [payments.issue_refund]}}
default_route: refunds
"""
HELD_S = 120  # the route's deadline: how long a call may wait for a human


def ask_refund(served: Served, answers: list[httpx.Response]) -> threading.Thread:
    """A call whose answer is a tool call that needs a human, asked on its own thread."""
    function = {"name": "payments.issue_refund", "parameters": {"type": "object"}}
    body = {
        "model": "route:refunds",
        "messages": [{"role": "user", "content": "refund order 42 to jane@example.com"}],
        "tools": [{"type": "function", "function": function}],
        "tool_choice": {"type": "function", "function": {"name": "payments.issue_refund"}},
    }

    def ask() -> None:
        with contextlib.suppress(httpx.HTTPError):  # a replica killed under it
            answers.append(
                httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=60)
            )

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    return asking


def held_lines(served: Served) -> list[str]:
    listed = run_cli(served.data_dir, "approvals", "list")
    assert listed.returncode == 0, listed.stderr
    return [line for line in listed.stdout.splitlines() if line.startswith("apr_")]


def replica_of(served: Served) -> str:
    assert served.process is not None
    return f"-{served.process.pid}"  # replica names end in the serving process's id


@pytest.mark.usefixtures("pepper")
def test_a_call_held_on_one_replica_is_listed_and_approved_through_another(
    tmp_path: Path, schema: str, upstream: FakeOpenAI
) -> None:
    upstream.reset()
    with replicas(tmp_path, APPROVAL_POLICY.format(url=upstream.base_url, total_s=HELD_S), schema, n=2) as (
        holder,
        other,
    ):
        answers: list[httpx.Response] = []
        asking = ask_refund(holder, answers)
        wait_until(lambda: bool(held_lines(other)), 30, "the call held on the first, listed on the other")
        (line,) = held_lines(other)
        approval_id = line.split()[0]
        assert "payments.issue_refund" in line and replica_of(holder) in line and "gone" not in line
        assert "jane@example.com" not in line  # the arguments as the holder redacted them

        done = run_cli(other.data_dir, "approvals", "approve", approval_id, "--reason", "checked the order")
        assert done.returncode == 0, done.stderr
        took = wait_until(lambda: bool(answers), 10, "the held call released")
        assert took <= PROPAGATION_S, f"the approval took {took:.2f} s to reach the holding replica"
        calls = answers[0].json()["choices"][0]["message"]["tool_calls"]
        assert [call["function"]["name"] for call in calls] == ["payments.issue_refund"]
        asking.join(timeout=10)

        sql = (
            "SELECT action, actor, actor_kind, payload FROM audit_log "
            f"WHERE subject = '{approval_id}' ORDER BY seq"
        )
        wait_until(lambda: len(query(holder, sql)) == 2, 10, "the decision audited where the call was held")
        requested, granted = query(holder, sql)
        assert (requested["action"], granted["action"], granted["actor_kind"]) == (
            "approval.requested",
            "approval.granted",
            "human",
        )
        decided = orjson.loads(granted["payload"])
        assert decided["reason"] == "checked the order" and decided["decided_on"].endswith(replica_of(other))
        assert query(other, sql) == []  # one entry per decision, on the holder's chain
        nothing_held = lambda: pg(schema, "SELECT count(*) FROM approvals") == [(0,)]  # noqa: E731
        wait_until(nothing_held, 5, "the decided call withdrawn")
        again = run_cli(other.data_dir, "approvals", "deny", approval_id)
        assert again.returncode != 0 and "no replica holds" in again.stderr

        # a call whose replica dies is shown gone, and cannot be decided any more
        orphan = ask_refund(holder, [])
        wait_until(lambda: bool(held_lines(other)), 30, "a second call held")
        (line,) = held_lines(other)
        holder.kill()
        wait_until(
            lambda: any("gone" in held for held in held_lines(other)), 30, "the dead replica's call gone"
        )
        refused = run_cli(other.data_dir, "approvals", "approve", line.split()[0])
        assert refused.returncode != 0 and "which is gone" in refused.stderr
        ((deadline,),) = pg(schema, "SELECT expires_at - held_at FROM approvals")
        assert deadline.total_seconds() <= HELD_S  # it expires with the route's deadline
        orphan.join(timeout=10)


BREAKER_POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", models: [mock-gpt]}}
  spare: {{kind: openai_compat, base_url: "{spare}", models: [mock-gpt]}}
breaker: {{consecutive_failures: 1, base_ejection_s: {eject_s}, max_ejection_s: 60}}
routes:
  - {{intent: capped, primary: lab/mock-gpt, fallback: [spare/mock-gpt], max_retries: 0}}
default_route: capped
"""
EJECT_S = 8


def breaker_state(served: Served, target: str) -> str | None:
    return httpx.get(f"{served.url}/healthz", timeout=10).json()["breakers"].get(target)


@pytest.mark.usefixtures("pepper")
def test_a_provider_ejected_on_one_replica_is_left_alone_by_the_other_until_the_cool_down_ends(
    tmp_path: Path, schema: str, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    lab, spare = upstreams
    lab.reset()
    spare.reset()
    policy = BREAKER_POLICY.format(url=lab.base_url, spare=spare.base_url, eject_s=EJECT_S)
    with replicas(tmp_path, policy, schema, n=2) as (first, second):
        lab.fail_always(Fault(status=503))
        assert chat(first, first.key).status_code == 200  # lab failed once: ejected; spare served
        assert breaker_state(first, "lab/mock-gpt") == "open"
        took = wait_until(lambda: breaker_state(second, "lab/mock-gpt") == "open", 5, "the ejection shared")
        assert took <= PROPAGATION_S, f"the ejection took {took:.2f} s to reach the other replica"

        tried = lab.request_count
        for _ in range(5):
            answer = chat(second, second.key)
            assert answer.status_code == 200
        assert lab.request_count == tried  # not one call to the ejected provider from the other replica
        assert breaker_state(second, "lab/mock-gpt") == "open"  # and all within the cool-down
        trace = trace_of(second, answer.headers["x-fleetdeck-request-id"])
        skipped, served = orjson.loads(str(trace["attempt_log"]))
        assert (skipped["provider"], skipped["status"], skipped["error_type"]) == (
            "lab",
            "skipped",
            "breaker_open",
        )
        assert (served["provider"], served["status"]) == ("spare", "ok")

        lab.clear_faults()  # once the cool-down ends, the other replica probes lab on its own

        def probed() -> bool:
            assert chat(second, second.key).status_code == 200
            return lab.request_count > tried

        wait_until(probed, EJECT_S + 20, "the other replica probing lab after the cool-down")
        wait_until(lambda: breaker_state(second, "lab/mock-gpt") == "closed", 10, "the probe closing it")
        opened = "SELECT subject FROM audit_log WHERE action = 'breaker.opened'"
        wait_until(lambda: bool(query(first, opened)), 10, "the ejection audited")
        assert query(second, opened) == []  # audited by the replica that ejected
    (row,) = pg(schema, "SELECT target, replica FROM ejections")
    assert row[0] == "lab/mock-gpt" and row[1].endswith(replica_of(first))
