"""Rate limits through a real `fleetdeck serve`: requests, tokens and calls in flight per key
and route, exact under a burst, with the 429 and headers OpenAI's clients retry on.

The sliding window itself is tested on the limiter with a clock the test turns.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, create_key, rows_once_there, run_cli

from console.gateway.limits import Lease, Limit, RateLimiter, Throttled
from console.policy import PolicyError, parse_policy

POLICY = """
providers:
  lab: {{kind: openai_compat, base_url: "{url}", models: [mock-gpt]}}
routes:
  - {{intent: open, primary: lab/mock-gpt, max_retries: 0}}
  - intent: paced
    primary: lab/mock-gpt
    max_retries: 0
    rate_limit: {{requests_per_minute: 60, window_s: 2}}
default_route: open
"""
MAX_TOKENS = 10
# Three-letter words: the estimate (prompt bytes / 4 + max_tokens) is a little above what the
# fake upstream counts (a token a word, 3 a message, max_tokens words of answer), so however
# many calls settle during the burst, the fifth always fits and the sixth never does.
PROMPT = [{"role": "user", "content": " ".join("xxx" for _ in range(80))}]
ESTIMATE = len(orjson.dumps(PROMPT)) // 4 + MAX_TOKENS
KEYS: dict[str, dict[str, int]] = {
    "burst": {"requests_per_minute": 60},
    "tokens": {"tokens_per_minute": 5 * ESTIMATE + ESTIMATE // 2},  # room for five calls, not six
    "slots": {"concurrent": 4},
    "pacer": {},
}


pytestmark = pytest.mark.usefixtures("clean_upstream")


@pytest.fixture(scope="module")
def policy(upstream: FakeOpenAI) -> str:
    return POLICY.format(url=upstream.base_url)


@pytest.fixture(scope="module")
def keys(data_dir: Path) -> dict[str, str]:
    return {name: create_key(data_dir, name, rate_limits=limits) for name, limits in KEYS.items()}


@pytest.fixture(scope="module")
def lab(keys: dict[str, str], served: Served) -> tuple[Served, dict[str, str]]:
    return served, keys


def burst(served: Served, key: str, n: int, model: str = "route:open", **body: Any) -> list[httpx.Response]:
    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            payload = {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS, **body}
            headers = {"Authorization": f"Bearer {key}"}
            url = f"{served.base_url}/chat/completions"
            return await asyncio.gather(*(client.post(url, json=payload, headers=headers) for _ in range(n)))

    return asyncio.run(send_all())


def counts(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


def key_statuses(served: Served, key_name: str, n: int) -> Counter[str]:
    sql = (
        "SELECT t.status FROM traces t JOIN virtual_keys k ON t.key_id = k.key_id "
        f"WHERE k.name = '{key_name}' QUALIFY count(*) OVER () >= {n}"
    )
    rows = rows_once_there(served, sql, f"fewer than {n} traces for {key_name}", timeout_s=30)
    return Counter(str(row["status"]) for row in rows)


def test_a_burst_of_300_against_60_a_minute(lab: tuple[Served, dict[str, str]]) -> None:
    served, keys = lab
    responses = burst(served, keys["burst"], 300)
    assert counts(responses) == {200: 60, 429: 240}
    refused = [r for r in responses if r.status_code == 429]
    for response in refused:
        error = response.json()["error"]
        assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["x-ratelimit-limit-requests"] == "60"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
    served_remaining = sorted(
        int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.is_success
    )
    assert served_remaining == list(range(60))  # each admitted call saw the one before it
    assert key_statuses(served, "burst", 300) == {"ok": 60, "rate_limited": 240}


def test_tokens_per_minute_hold_for_streams(lab: tuple[Served, dict[str, str]]) -> None:
    served, keys = lab
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    responses = burst(served, keys["tokens"], 20, **stream)
    assert counts(responses) == {200: 5, 429: 15}
    refusal = next(r for r in responses if r.status_code == 429).json()["error"]
    assert refusal["type"] == "tokens" and "tokens" in refusal["message"]
    assert key_statuses(served, "tokens", 20) == {"ok": 5, "rate_limited": 15}


def test_no_more_than_four_in_flight_at_the_upstream(
    lab: tuple[Served, dict[str, str]], upstream: FakeOpenAI
) -> None:
    served, keys = lab
    upstream.fail_always(Fault(delay_s=0.3))  # slow answers keep calls in flight
    responses = burst(served, keys["slots"], 20)
    upstream.clear_faults()
    tally = counts(responses)
    assert upstream.peak_in_flight == 4
    assert tally[200] >= 4 and tally[200] + tally[429] == 20
    assert all("in flight" in r.json()["error"]["message"] for r in responses if r.status_code == 429)
    # every lease was given back: the next four run together again
    again = burst(served, keys["slots"], 4)
    assert counts(again) == {200: 4}


def test_the_openai_sdk_waits_out_the_window_and_succeeds(lab: tuple[Served, dict[str, str]]) -> None:
    served, keys = lab
    client = openai.OpenAI(base_url=served.base_url, api_key=keys["pacer"], max_retries=3)
    answers = [
        client.chat.completions.with_raw_response.create(model="route:paced", messages=PROMPT, max_tokens=5)  # type: ignore[arg-type]
        for _ in range(3)
    ]
    assert all(answer.http_response.status_code == 200 for answer in answers)
    # the route allows 2 in any 2 s: the third was refused once, then served
    assert key_statuses(served, "pacer", 4) == {"ok": 3, "rate_limited": 1}


def test_keys_take_their_limits_on_the_command_line(tmp_path: Path) -> None:
    created = run_cli(
        tmp_path, "keys", "create", "--name", "ci", "--env", "dev", "--rpm", "30", "--concurrent", "2"
    )
    assert created.returncode == 0, created.stderr
    listing = orjson.loads(run_cli(tmp_path, "keys", "list", "--format", "json").stdout)
    assert (listing[0]["requests_per_minute"], listing[0]["tokens_per_minute"], listing[0]["concurrent"]) == (
        30,
        None,
        2,
    )
    refused = run_cli(tmp_path, "keys", "create", "--name", "bad", "--env", "dev", "--rpm", "0")
    assert refused.returncode != 0 and "requests_per_minute" in refused.stderr


def test_a_bad_rate_limit_in_the_policy_names_its_line() -> None:
    text = POLICY.format(url="http://127.0.0.1:9").replace("window_s: 2", "window_s: 0")
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "routes.yaml")
    assert "routes.yaml:9" in str(raised.value) and "window_s" in str(raised.value)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limit = [Limit("key:k", requests=3, window_s=60)]
    for second in (0, 10, 20):
        clock.now = 1000 + second
        assert isinstance(limiter.admit(limit, 0), Lease)
    clock.now = 1059
    refused = limiter.admit(limit, 0)
    assert isinstance(refused, Throttled) and refused.retry_after_s == pytest.approx(1.0)
    assert refused.headers["retry-after"] == "1"
    clock.now = 1060.5  # the first call has left the window, the second not
    assert isinstance(limiter.admit(limit, 0), Lease)
    assert isinstance(limiter.admit(limit, 0), Throttled)


def test_tokens_settle_to_what_was_used_and_limits_are_all_or_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    tight, loose = Limit("route:r", tokens=100), Limit("key:k", tokens=1000)
    first = limiter.admit([tight, loose], 80)
    assert isinstance(first, Lease)
    assert isinstance(limiter.admit([tight, loose], 30), Throttled)
    first.release(20)  # it used 20 of the 80 it held
    second = limiter.admit([tight, loose], 30)
    assert isinstance(second, Lease)
    assert second.headers["x-ratelimit-remaining-tokens"] == "50"
    # the refusal took nothing from the loose limit: 1000 - 20 - 30 remain
    assert isinstance(limiter.admit([loose], 951), Throttled)
    assert isinstance(limiter.admit([loose], 950), Lease)
