"""Load balancing across deployments of one model, through a real `fleetdeck serve` over two
fake upstreams, and the balancer's strategies on a clock the test turns."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, trace_of

from console.gateway.balancer import Balancer
from console.gateway.executor import Attempt, Target
from console.policy import PolicyError, parse_policy
from console.providers.upstream_limits import read_limits

POLICY = """
providers:
  east: {{kind: openai_compat, base_url: "{east}", models: [m, m2, m3]}}
  west: {{kind: openai_compat, base_url: "{west}", models: [m, m2, m3]}}
routes:
  - intent: weighted
    primary: east/m
    max_retries: 0
    balance:
      deployments: [{{model: east/m, weight: 3}}, {{model: west/m, weight: 1}}]
  - intent: busy
    primary: east/m
    balance: {{strategy: least_busy, deployments: [{{model: east/m}}, {{model: west/m}}]}}
  - intent: cooled  # its own model: its 429 cools east/m2, not east/m
    primary: east/m2
    balance: {{deployments: [{{model: east/m2}}, {{model: west/m2}}]}}
  - intent: learned
    primary: east/m3
    balance: {{deployments: [{{model: east/m3}}, {{model: west/m3}}]}}
default_route: weighted
"""
EAST, WEST = Target("east", "m"), Target("west", "m")


@pytest.fixture(scope="module")
def policy(upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> str:
    east, west = upstreams
    return POLICY.format(east=east.base_url, west=west.base_url)


@pytest.fixture(autouse=True)
def clean(upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    for fake in upstreams:
        fake.reset()


def ask(served: Served, route: str, client: httpx.Client | None = None) -> httpx.Response:
    body = {"model": f"route:{route}", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    post = client.post if client is not None else httpx.post
    response = post(f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30)
    assert response.status_code == 200, response.text
    return response


def answered_by(response: httpx.Response) -> str:
    return response.headers["x-fleetdeck-model"]


def test_weights_of_three_to_one_split_the_traffic_three_to_one(served: Served) -> None:
    async def send(n: int) -> list[httpx.Response]:
        body = {"model": "route:weighted", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=8)) as client:
            url = f"{served.base_url}/chat/completions"
            return await asyncio.gather(*(client.post(url, json=body, headers=served.auth) for _ in range(n)))

    responses = asyncio.run(send(400))
    assert all(r.status_code == 200 for r in responses)
    split = Counter(answered_by(r) for r in responses)
    assert abs(split["east/m"] / 400 - 0.75) <= 0.03, split
    trace = trace_of(served, responses[0].headers["x-fleetdeck-request-id"])
    assert trace["reason_code"] == "balanced-weighted"
    assert isinstance(trace["guard_results"], str)
    balance = orjson.loads(trace["guard_results"])["routing"]["balance"]
    assert balance["strategy"] == "weighted" and balance["chosen"] == answered_by(responses[0])


def test_least_busy_moves_traffic_off_a_slow_deployment(
    served: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    _, west = upstreams
    west.fail_always(Fault(delay_s=5))  # west is slow: its call stays in flight
    with httpx.Client() as client:
        assert answered_by(ask(served, "busy", client)) == "east/m"  # both idle: the round robin's turn
        slow: dict[str, Any] = {}
        in_flight = threading.Thread(target=lambda: slow.update(response=ask(served, "busy")))
        in_flight.start()
        assert west.wait_until(lambda: west.request_count == 1, timeout=30)
        meanwhile = [answered_by(ask(served, "busy", client)) for _ in range(10)]
        in_flight.join(timeout=60)
    assert meanwhile == ["east/m"] * 10
    assert answered_by(slow["response"]) == "west/m"


def test_a_429_with_retry_after_moves_the_call_and_the_traffic_to_the_sibling(
    served: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    east, west = upstreams
    east.push(Fault(status=429, retry_after=30))
    with httpx.Client() as client:
        first = ask(served, "cooled", client)  # east's turn: 429, so west answers at once
        then = [answered_by(ask(served, "cooled", client)) for _ in range(6)]
    assert answered_by(first) == "west/m2"
    assert then == ["west/m2"] * 6
    assert east.request_count == 1 and west.request_count == 7
    attempts = trace_of(served, first.headers["x-fleetdeck-request-id"])["attempt_log"]
    assert isinstance(attempts, str) and '"http_status": 429' in attempts.replace(":", ": ").replace(
        ":  ", ": "
    )


def test_an_upstream_that_says_it_has_no_requests_left_gets_none_until_its_reset(
    served: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    east, _ = upstreams
    east.answer_headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
    }
    with httpx.Client() as client:
        first = ask(served, "learned", client)  # both unknown: the round robin's turn, east
        then = [answered_by(ask(served, "learned", client)) for _ in range(6)]
    assert answered_by(first) == "east/m3"
    assert then == ["west/m3"] * 6  # east said it had nothing left: no 429 was needed
    assert east.request_count == 1
    health = httpx.get(f"{served.url}/healthz", timeout=10).json()
    reported = {row["deployment"]: row for row in health["deployments"] if row["route"] == "learned"}
    assert reported["east/m3"]["limits"]["requests"]["remaining"] == 0
    assert reported["east/m3"]["cooling_s"] > 0 and reported["west/m3"]["cooling_s"] == 0
    assert reported["west/m3"]["calls_last_minute"] == 6


def test_the_usage_strategy_prefers_the_deployment_with_most_headroom() -> None:
    clock = Clock()
    reported = {
        EAST: read_limits(
            {"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "200"}, clock.now
        ),
        WEST: read_limits(
            {"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "700"}, clock.now
        ),
    }
    balancer, route = Balancer(reported.get, clock=clock), balanced_route("usage")
    chosen = balancer.order(route)
    assert chosen.targets == (WEST, EAST) and chosen.why.startswith("70% of its limits left")


def test_limits_are_read_from_openai_and_anthropic_headers() -> None:
    openai = read_limits(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "6m0s",
        },
        now=10.0,
    )
    assert openai is not None
    assert openai.budgets["requests"].resets_at == pytest.approx(10.12)
    assert openai.exhausted_until(10.0) == pytest.approx(370.0)
    assert openai.headroom(10.0) == 0.0
    anthropic = read_limits(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "25",
            "anthropic-ratelimit-requests-reset": "2099-01-01T00:00:00Z",
        },
        now=0.0,
    )
    assert anthropic is not None and anthropic.headroom(0.0) == 0.5 and anthropic.exhausted_until(0.0) is None
    assert read_limits({"content-type": "application/json"}) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def balanced_route(strategy: str, weights: tuple[float, float] = (1, 1)) -> Any:
    text = f"""
providers:
  east: {{kind: openai_compat, base_url: "http://127.0.0.1:9", models: [m]}}
  west: {{kind: openai_compat, base_url: "http://127.0.0.1:9", models: [m]}}
routes:
  - intent: r
    primary: east/m
    balance:
      strategy: {strategy}
      deployments: [{{model: east/m, weight: {weights[0]}}}, {{model: west/m, weight: {weights[1]}}}]
"""
    return parse_policy(text).routes[0]


def test_smooth_round_robin_interleaves() -> None:
    balancer, route = Balancer(clock=Clock()), balanced_route("weighted", (3, 1))
    firsts = [balancer.order(route).targets[0] for _ in range(8)]
    assert firsts == [EAST, EAST, WEST, EAST] * 2


def test_a_cooling_deployment_comes_back_when_its_retry_after_has_passed() -> None:
    clock = Clock()
    balancer, route = Balancer(clock=clock), balanced_route("least_busy")
    balancer.attempt_started(EAST)
    balancer.attempt_ended(Attempt(EAST, "error", 5.0, "rate_limited", 429, retry_after_s=2.0))
    assert [balancer.order(route).targets for _ in range(4)] == [(WEST, EAST)] * 4
    clock.now += 2.01
    assert {balancer.order(route).targets[0] for _ in range(4)} == {EAST, WEST}


def test_lowest_latency_tries_the_untried_then_the_fastest() -> None:
    balancer, route = Balancer(clock=Clock()), balanced_route("lowest_latency")
    for latency in (40.0, 50.0, 60.0):
        balancer.attempt_started(EAST)
        balancer.attempt_ended(Attempt(EAST, "ok", latency))
    assert balancer.order(route).targets[0] == WEST  # never measured
    for latency in (10.0, 12.0, 90.0):
        balancer.attempt_started(WEST)
        balancer.attempt_ended(Attempt(WEST, "ok", latency))
    chosen = balancer.order(route)
    assert chosen.targets == (WEST, EAST) and chosen.why == "p50 12.0 ms"
    assert balancer.in_flight(EAST) == balancer.in_flight(WEST) == 0


def test_a_balance_that_leaves_out_the_primary_or_names_an_unknown_provider_is_refused() -> None:
    text = """providers:
  east: {kind: openai_compat, base_url: "http://127.0.0.1:9", models: [m]}
routes:
  - intent: r
    primary: east/m
    balance:
      deployments:
        - {model: east/m}
        - {model: north/m}
  - intent: s
    primary: east/m
    balance: {deployments: [{model: east/x}, {model: east/y}]}
"""
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "routes.yaml")
    message = str(raised.value)
    assert "routes.yaml:9" in message and "Unknown provider 'north'" in message
    assert "must include the primary, east/m" in message
