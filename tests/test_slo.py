"""Latency SLOs: a slow primary loses its traffic within the window and gets it back after recovery.

A real `fleetdeck serve` over two fake upstreams; the primary is slowed with Fault(delay_s).
Requests are sent one after another and counted, so the test follows the window logic
(window of 4 calls, one probe in PROBE_EVERY), never the clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fakes.openai_upstream import FakeOpenAI, Fault
from gateway_process import Served, stored_traces, trace_of

from console.gateway.executor import Attempt, Target
from console.gateway.slo import PROBE_EVERY, LatencySlos, p95
from console.policy import ModelRef, Route

WINDOW = 20
SLOW_TO_BREACH = WINDOW - math.ceil(0.95 * WINDOW) + 1  # slow calls that put the p95 above the SLO
SLOW_S = 1.0  # far above the SLO, far below the deadline
POLICY = f"""
providers:
  lab: {{{{kind: openai_compat, base_url: {{primary}}}}}}
  backup: {{{{kind: openai_compat, base_url: {{backup}}}}}}
routes:
  - intent: support
    primary: lab/mock-gpt
    fallback: [backup/mock-gpt]
    max_retries: 0
    timeouts: {{{{total_s: 10}}}}
    latency_slo_ms: 400
    latency_slo_window: {WINDOW}
"""
PRIMARY = ("lab/mock-gpt", "primary")
OVERRIDE = ("backup/mock-gpt", "latency-slo-override")


@pytest.fixture(scope="module")
def policy(upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> str:
    primary, backup = upstreams
    return POLICY.format(primary=primary.base_url, backup=backup.base_url)


@pytest.fixture
def gateway_dir(gateway_dir: Path, upstreams: tuple[FakeOpenAI, FakeOpenAI]) -> Iterator[Path]:
    yield gateway_dir
    # `gateway` has stopped (its store can be opened); it reset the upstreams before it started
    primary, backup = upstreams
    assert len(stored_traces(gateway_dir, "request_id")) == primary.request_count + backup.request_count


def calls(served: Served, count: int) -> list[tuple[str, str]]:
    """(model, reason) of `count` calls sent one after another."""
    body = {"model": "route:support", "messages": [{"role": "user", "content": "hello"}]}
    answered = []
    for _ in range(count):
        response = httpx.post(
            f"{served.base_url}/chat/completions", json=body, headers=served.auth, timeout=30
        )
        assert response.status_code == 200
        answered.append((response.headers["x-fleetdeck-model"], response.headers["x-fleetdeck-reason"]))
        served.last_request_id = response.headers["x-fleetdeck-request-id"]  # type: ignore[attr-defined]
    return answered


def test_a_breach_moves_traffic_within_the_window_and_back_after_recovery(
    gateway: Served, upstreams: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    served, (primary, backup) = gateway, upstreams
    assert calls(served, WINDOW) == [PRIMARY] * WINDOW

    primary.fail_always(Fault(delay_s=SLOW_S))
    breach = calls(served, SLOW_TO_BREACH + 3)
    # Once enough slow calls are in the window to lift its p95, the next call goes to the backup.
    assert breach == [PRIMARY] * SLOW_TO_BREACH + [OVERRIDE] * 3

    primary.clear_faults()
    recovery = calls(served, WINDOW * PROBE_EVERY + 5)
    back = next(n for n in range(len(recovery) + 1) if set(recovery[n:]) <= {PRIMARY})
    # While overridden, every PROBE_EVERY-th call measures the primary; once its window's p95
    # is under the SLO again, traffic is back for good.
    assert 0 < back <= WINDOW * PROBE_EVERY and len(recovery) - back >= 5
    overridden = [r for r in recovery[:back] if r != PRIMARY]
    assert set(overridden) == {OVERRIDE}
    probes = [n for n, r in enumerate(recovery[:back]) if r == PRIMARY]
    assert {b - a for a, b in itertools.pairwise(probes)} == {PROBE_EVERY}, "one probe in PROBE_EVERY"
    assert backup.request_count == 3 + len(overridden)

    last = trace_of(served, served.last_request_id)  # type: ignore[attr-defined]
    notes = orjson.loads(str(last["guard_results"]))["routing"]["latency_slo"]
    assert notes["slo_ms"] == 400 and notes["overridden"] is False


def test_the_window_and_its_percentile() -> None:
    route = Route(
        intent="r",
        primary=ModelRef("a", "m"),
        fallback=[ModelRef("b", "m"), ModelRef("c", "m")],
        latency_slo_ms=100,
        latency_slo_window=4,
    )
    a, b, c = (Target(name, "m") for name in "abc")
    slos = LatencySlos()
    assert p95([5.0, 1.0, 3.0]) == 5.0
    assert p95(range(1, 101)) == 95
    for latency in (10.0, 20.0, 500.0):
        slos.observe(route, [Attempt(a, "ok", latency)])
    assert not slos.choose(route, (a, b, c)).overridden, "a window that is not full decides nothing"
    slos.observe(route, [Attempt(a, "error", 900.0, error_type="server_error")])  # fast failures don't count
    assert not slos.choose(route, (a, b, c)).overridden
    slos.observe(route, [Attempt(a, "error", 900.0, error_type="timeout"), Attempt(c, "ok", 5.0)])
    slos.observe(route, [Attempt(b, "ok", 50.0)])
    choice = slos.choose(route, (a, b, c))
    assert choice.overridden and choice.targets == (c, a, b), "the fastest candidate first"
    assert choice.primary_p95_ms == 900.0
