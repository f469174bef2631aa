"""Cost controls through a real `fleetdeck serve`: hard caps under concurrency, keys, fan-out, prices.

The fake upstream counts tokens as words and truncates its echo at `max_tokens` words;
with the input price at 0 and a prompt longer than `max_tokens`, every served call
costs exactly its reserved worst case, so "exactly 50 fit" holds whatever the timing.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import REPO, Served, create_key, trace_of
from genai_prices import Usage, calc_price

from console.engine import Engine
from console.settings import Settings

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
    models: [mock-gpt, gpt-4o-mini, gpt-4o, gpt-4.1-nano, unpriced-model]
    prices: {{mock-gpt: {{input: 0, output: {output}}}}}
routes:
  - {{intent: capped, primary: lab/mock-gpt, max_retries: 0, timeouts: {{total_s: 60}}}}
  - {{intent: prod_only, primary: lab/mock-gpt, environments: [prod]}}
  - {{intent: looping, primary: lab/mock-gpt, max_steps_per_task: 3}}
  - {{intent: route_capped, primary: lab/mock-gpt, max_budget_daily: {cap}}}
  - {{intent: unpriced, primary: lab/unpriced-model, max_budget_daily: 1}}
default_route: capped
"""
KEYS = {
    "json": {"daily_cap": CAP},
    "stream": {"monthly_cap": CAP},
    "failing": {"daily_cap": CAP},
    "revoked": {},
}


pytestmark = pytest.mark.usefixtures("clean_upstream")


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url, output=OUTPUT_PRICE, cap=CAP)


@pytest.fixture(scope="module")
def keys(data_dir: Path) -> dict[str, str]:
    """The virtual keys, stored before the instance starts."""
    return {name: create_key(data_dir, name, **caps) for name, caps in KEYS.items()}


@pytest.fixture(scope="module")
def lab(keys: dict[str, str], served: Served) -> tuple[Served, dict[str, str]]:
    return served, keys  # `keys` first: pytest sets them up in this order


def burst(served: Served, key: str, n: int, **body: Any) -> list[httpx.Response]:
    """`n` chat requests at once, each on its own connection."""

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            payload = {"model": "route:capped", "messages": LONG_PROMPT, "max_tokens": MAX_TOKENS, **body}
            headers = {"Authorization": f"Bearer {key}"}
            return await asyncio.gather(
                *(
                    client.post(f"{served.base_url}/chat/completions", json=payload, headers=headers)
                    for _ in range(n)
                )
            )

    return asyncio.run(send_all())


def outcome_counts(responses: list[httpx.Response]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for response in responses:
        if response.status_code == 200:
            counts["served"] += 1
        else:
            counts[response.json()["error"]["code"]] += 1
    return counts


def key_traces(served: Served, key_name: str) -> list[dict[str, Any]]:
    endpoint_sql = (
        "SELECT t.status, t.cost_usd, t.reason_code, t.http_status FROM traces t "
        f"JOIN virtual_keys k ON t.key_id = k.key_id WHERE k.name = '{key_name}'"
    )
    from console.gateway.admin import AdminEndpoint

    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    return list(endpoint.query({"sql": endpoint_sql}).to_pylist())


def wait_for_traces(served: Served, key_name: str, n: int) -> list[dict[str, Any]]:
    for _ in range(100):
        rows = key_traces(served, key_name)
        if len(rows) >= n:
            return rows
        asyncio.run(asyncio.sleep(0.1))
    raise AssertionError(f"{len(rows)} traces of {key_name}, expected {n}")


def test_200_concurrent_calls_against_a_cap_for_50(lab: tuple[Served, dict[str, str]]) -> None:
    served, keys = lab
    counts = outcome_counts(burst(served, keys["json"], 200))
    assert counts == {"served": 50, "budget_exceeded": 150}
    rows = wait_for_traces(served, "json", 200)
    assert len(rows) == 200
    assert sum(r["cost_usd"] or 0 for r in rows) <= CAP
    refused = [r for r in rows if r["status"] == "over_budget"]
    assert len(refused) == 150
    assert {(r["reason_code"], r["http_status"]) for r in refused} == {("budget-exceeded", 429)}


def test_the_same_with_streams(lab: tuple[Served, dict[str, str]]) -> None:
    served, keys = lab
    responses = burst(served, keys["stream"], 200, stream=True)
    assert outcome_counts(responses) == {"served": 50, "budget_exceeded": 150}
    for response in responses:
        if response.status_code == 200:
            assert response.text.rstrip().endswith("data: [DONE]")
    rows = wait_for_traces(served, "stream", 200)
    assert sum(r["cost_usd"] or 0 for r in rows) <= CAP
    assert Counter(r["status"] for r in rows) == {"ok": 50, "over_budget": 150}


def test_calls_that_fail_upstream_release_what_they_reserved(
    lab: tuple[Served, dict[str, str]], upstream: FakeOpenAI
) -> None:
    served, keys = lab
    upstream.fail_always(Fault(status=503))
    failed = outcome_counts(burst(served, keys["failing"], 100))
    assert failed["served"] == 0 and failed["upstream_server_error"] >= 50
    assert failed["upstream_server_error"] + failed["budget_exceeded"] == 100
    upstream.clear_faults()
    # Nothing was spent and nothing is still held: the full cap is there again.
    assert outcome_counts(burst(served, keys["failing"], 200)) == {"served": 50, "budget_exceeded": 150}
    rows = wait_for_traces(served, "failing", 300)
    assert sum(r["cost_usd"] or 0 for r in rows) <= CAP
    health = httpx.get(f"{served.url}/healthz", timeout=10).json()
    held = [b["held_usd"] for b in health["budgets"] if b["scope"].startswith("key:")]
    assert held and all(h == 0 for h in held)


def test_every_refusal_is_an_audit_event(lab: tuple[Served, dict[str, str]]) -> None:
    served, _ = lab
    key = create_key_live(served, "audited", daily_cap=CALL_COST * 1.5)
    counts = outcome_counts(burst(served, key, 3))
    assert counts == {"served": 1, "budget_exceeded": 2}
    from console.gateway.admin import AdminEndpoint

    endpoint = AdminEndpoint.find(served.data_dir)
    assert endpoint is not None
    for _ in range(100):
        events = endpoint.query(
            {
                "sql": "SELECT actor, actor_kind, subject, payload FROM audit_log "
                "WHERE action = 'budget.exceeded' AND actor = 'audited'"
            }
        ).to_pylist()
        if len(events) == 2:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert len(events) == 2
    assert {e["actor_kind"] for e in events} == {"key"}
    assert all(orjson.loads(e["payload"])["cap_usd"] == pytest.approx(CALL_COST * 1.5) for e in events)
    scope = events[0]["subject"]
    breaches = endpoint.query(
        {"sql": f"SELECT actor_kind FROM audit_log WHERE action = 'budget.breach' AND subject = '{scope}'"}
    ).to_pylist()
    assert breaches == [{"actor_kind": "system"}], "one incident per breached cap and period"


def test_a_route_cap_and_a_fan_out_cap(lab: tuple[Served, dict[str, str]]) -> None:
    served, _ = lab
    counts = outcome_counts(burst(served, served.key, 60, model="route:route_capped"))
    assert counts == {"served": 50, "budget_exceeded": 10}
    client = served.client()
    for _ in range(3):
        client.chat.completions.create(
            model="route:looping",
            messages=LONG_PROMPT,
            max_tokens=2,
            extra_headers={"X-Fleetdeck-Task": "t-loop"},
        )
    response = httpx.post(
        f"{served.base_url}/chat/completions",
        json={"model": "route:looping", "messages": LONG_PROMPT, "max_tokens": 2},
        headers={**served.auth, "X-Fleetdeck-Task": "t-loop"},
        timeout=30,
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "step_limit_exceeded"
    assert trace_of(served, response.headers["x-fleetdeck-request-id"])["status"] == "blocked"


def test_an_unpriced_model_under_a_cap_is_refused_clearly(lab: tuple[Served, dict[str, str]]) -> None:
    served, _ = lab
    response = httpx.post(
        f"{served.base_url}/chat/completions",
        json={"model": "route:unpriced", "messages": LONG_PROMPT},
        headers=served.auth,
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "model_unpriced" and "providers.lab.prices" in error["message"]


def test_keys_of_one_environment_and_revoked_keys_are_refused(lab: tuple[Served, dict[str, str]]) -> None:
    served, keys = lab
    body = {"model": "route:prod_only", "messages": LONG_PROMPT, "max_tokens": 2}
    dev = httpx.post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30)
    assert dev.status_code == 403 and dev.json()["error"]["code"] == "route_not_allowed"
    prod = create_key_live(served, "prod-app", environment="prod")
    ok = httpx.post(
        f"{served.base_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {prod}"},
        timeout=30,
    )
    assert ok.status_code == 200

    revoked = {"Authorization": f"Bearer {keys['revoked']}"}
    before = httpx.post(
        f"{served.base_url}/chat/completions", json=body | {"model": "route:capped"}, headers=revoked
    )
    assert before.status_code == 200
    cli("keys", "revoke", "revoked", "--data-dir", str(served.data_dir))
    after = httpx.post(
        f"{served.base_url}/chat/completions", json=body | {"model": "route:capped"}, headers=revoked
    )
    assert after.status_code == 401 and "revoked" in after.json()["error"]["message"]
    for headers in ({}, {"Authorization": "Bearer fd-dev-not-a-key"}):
        refused = httpx.post(f"{served.base_url}/chat/completions", json=body, headers=headers, timeout=30)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o", "gpt-4.1-nano"])
def test_streamed_and_plain_calls_cost_the_same_and_match_genai_prices(
    lab: tuple[Served, dict[str, str]], model: str
) -> None:
    served, _ = lab
    client = served.client()
    plain = client.chat.completions.with_raw_response.create(
        model=f"lab/{model}", messages=LONG_PROMPT, max_tokens=7
    )
    with client.chat.completions.with_streaming_response.create(
        model=f"lab/{model}", messages=LONG_PROMPT, max_tokens=7, stream=True
    ) as streamed:
        list(streamed.iter_lines())
    traces = [trace_of(served, r.headers["x-fleetdeck-request-id"]) for r in (plain, streamed)]
    assert traces[0]["input_tokens"] == traces[1]["input_tokens"] > 0
    assert traces[0]["output_tokens"] == traces[1]["output_tokens"] == 7
    expected = calc_price(
        Usage(input_tokens=int(traces[0]["input_tokens"]), output_tokens=7), model
    ).total_price
    assert traces[0]["cost_usd"] == traces[1]["cost_usd"] == pytest.approx(float(expected), rel=1e-9)
    assert {t["price_source"] for t in traces} == {"genai-prices"}


def create_key_live(served: Served, name: str, environment: str = "dev", **caps: float) -> str:
    args = ["keys", "create", "--name", name, "--env", environment, "--data-dir", str(served.data_dir)]
    for cap, value in caps.items():
        args += [f"--{cap.replace('_', '-')}", str(value)]
    return cli(*args).strip()


def cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_keys_are_shown_once_and_stored_only_as_keyed_hashes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    token = cli(
        "keys", "create", "--name", "ci", "--env", "staging", "--daily-cap", "5", "--data-dir", str(data_dir)
    )
    token = token.strip()
    assert token.startswith("fd-staging-")
    listing = cli("keys", "list", "--format", "json", "--data-dir", str(data_dir))
    assert token not in listing and '"ci"' in listing
    with Engine(Settings(data_dir=data_dir)) as engine:
        stored = engine.db.cursor().execute("SELECT * FROM virtual_keys").fetchall()
    assert token not in repr(stored)
    assert token.encode() not in (data_dir / "fleetdeck.duckdb").read_bytes()
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "console",
            "keys",
            "create",
            "--name",
            "ci",
            "--env",
            "dev",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert refused.returncode == 2 and "exists already" in refused.stderr
