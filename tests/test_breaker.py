from __future__ import annotations

import asyncio

from fakes.openai_upstream import FakeOpenAI, Fault

from console.gateway.breaker import Breaker, Breakers, State
from console.gateway.executor import ExecutionFailed, Executor, Plan, Target
from console.policy import BreakerConfig, Retry, Timeouts
from console.providers.openai_compat import OpenAICompatProvider


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = BreakerConfig(
    consecutive_failures=3,
    failure_ratio=0.5,
    min_requests=10,
    window_s=30,
    base_ejection_s=10,
    max_ejection_s=25,
)


def test_consecutive_failures_eject_and_a_probe_closes_after_the_ejection() -> None:
    clock = Clock()
    breaker = Breaker(SETTINGS, clock)
    assert [breaker.failed() for _ in range(3)] == [False, False, True]
    assert breaker.state is State.open and not breaker.available()
    clock.now += 9.9
    assert not breaker.available()
    clock.now += 0.2
    assert breaker.available(), "the first request after the ejection is the probe"
    assert not breaker.available(), "only one probe at a time"
    breaker.succeeded()
    assert breaker.state is State.closed and breaker.available()


def test_a_failed_probe_ejects_for_longer_up_to_the_cap() -> None:
    clock = Clock()
    breaker = Breaker(SETTINGS, clock)
    for _ in range(3):
        breaker.failed()
    durations = []
    for _ in range(3):
        durations.append(breaker.retry_in())
        clock.now += breaker.retry_in()
        assert breaker.available()
        assert breaker.failed(), "a failed probe ejects again"
    assert durations == [10, 20, 25]


def test_failure_ratio_over_the_window_ejects_without_a_streak() -> None:
    breaker = Breaker(SETTINGS, Clock())
    for _ in range(4):
        breaker.succeeded()
        assert not breaker.failed()
    breaker.succeeded()
    assert breaker.failed(), "5 failures in 10 calls is a 50% failure ratio"
    assert breaker.state is State.open


def test_old_calls_leave_the_window() -> None:
    clock = Clock()
    breaker = Breaker(SETTINGS, clock)
    for _ in range(4):
        breaker.succeeded()
        breaker.failed()
    clock.now += 31
    breaker.succeeded()
    breaker.failed()
    assert breaker.state is State.closed, "the earlier calls are outside the 30 s window"


def test_an_abandoned_probe_frees_the_slot() -> None:
    clock = Clock()
    breaker = Breaker(SETTINGS, clock)
    for _ in range(3):
        breaker.failed()
    clock.now += 10
    assert breaker.available()
    breaker.abandoned()
    assert breaker.available()


def test_an_ejection_followed_from_another_replica_opens_until_its_end_and_the_probe_is_ours() -> None:
    clock = Clock()
    breakers = Breakers(SETTINGS, clock)
    breakers.follow("lab/m", 7.0)  # from the cluster's sync thread: applied on the next look
    breaker = breakers["lab/m"]
    assert breaker.state is State.open and breaker.retry_in() == 7.0
    assert breaker.ejections == 0, "another replica's ejection adds nothing to this one's length"
    breakers.follow("lab/m", 3.0)  # an earlier end shortens nothing
    assert breakers["lab/m"].retry_in() == 7.0
    clock.now += 7
    assert breaker.available(), "once it ends, this replica probes on its own"
    assert breaker.failed() and breaker.retry_in() == 10, "a failed probe ejects for this one's own length"
    breakers.follow("lab/m", -1.0)  # an ejection over already changes nothing
    assert breakers.states() == {"lab/m": State.open}


# -- the executor's retries against a real HTTP upstream (bench/soak.py's retries and storm drills)

HELLO = {"messages": [{"role": "user", "content": "hello there"}]}


def _run_calls(
    fake: FakeOpenAI, breaker: BreakerConfig, calls: int, plan_targets: int = 1, banked: float | None = None
) -> list[bool]:
    """`calls` chat calls one after another through an Executor; whether each was served.
    `banked`: the retries the first target's budget holds at the start."""
    targets = (Target("lab", "mock-gpt"), Target("spare", "mock-gpt"))[:plan_targets]
    plan = Plan(targets, Timeouts(total_s=10), max_retries=2)

    async def run() -> list[bool]:
        providers = {
            "lab": OpenAICompatProvider("lab", fake.base_url, "sk-test"),
            "spare": OpenAICompatProvider("spare", fake.base_url, "sk-test"),
        }
        executor = Executor(providers, Breakers(breaker), Retry(backoff_base_s=0.001, backoff_max_s=0.002))
        if banked is not None:
            executor.budget(targets[0].name).balance = banked
        served = []
        try:
            for _ in range(calls):
                try:
                    await executor.run(plan, [], lambda p, model, _left: p.chat(model, HELLO))
                    served.append(True)
                except ExecutionFailed:
                    served.append(False)
        finally:
            for provider in providers.values():
                await provider.aclose()
        return served

    return asyncio.run(run())


def test_retries_in_an_outage_stay_within_the_retry_budget() -> None:
    # Without a budget, max_retries 2 made every call of an outage three upstream calls.
    never = BreakerConfig(consecutive_failures=1_000_000, min_requests=1_000_000)
    with FakeOpenAI() as fake:
        fake.fail_always(Fault(status=503))
        served = _run_calls(fake, never, 100)
        assert not any(served)
        assert fake.request_count <= 120, "at most a fifth of a retry per call"
        assert fake.request_count >= 101, "the first call may still retry"


def test_the_budget_lets_a_healthy_targets_occasional_failure_retry() -> None:
    never = BreakerConfig(consecutive_failures=1_000_000, min_requests=1_000_000)
    with FakeOpenAI() as fake:
        fake.push(Fault(status=503))  # the very first call: retried
        served = _run_calls(fake, never, 1)
        assert served == [True] and fake.request_count == 2


def test_a_target_is_not_retried_once_its_breaker_ejects_it() -> None:
    # consecutive_failures 5 with max_retries 2: call 1 fails 3 times, call 2 twice and is
    # ejected; its third attempt used to go to the ejected target all the same (6 failures).
    ejects = BreakerConfig(
        consecutive_failures=5, min_requests=1_000_000, base_ejection_s=600, max_ejection_s=600
    )
    with FakeOpenAI() as fake:
        fake.fail_always(Fault(status=503))
        served = _run_calls(fake, ejects, 2, banked=10.0)  # retries not held back by the budget
        assert served == [False, False]
        assert fake.request_count == 5, "ejected after 5 failures, and no attempt after that"
