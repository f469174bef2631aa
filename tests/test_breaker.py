from __future__ import annotations

from console.gateway.breaker import Breaker, Breakers, State
from console.policy import BreakerConfig


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
