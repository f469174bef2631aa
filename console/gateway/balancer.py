"""Load balancing: which deployment of a route's balanced primary answers a call first.

Strategies (policy `balance.strategy`):
- weighted: smooth weighted round robin, so 3:1 weights give 3 calls in 4 to the first;
- least_busy: the deployment with the fewest attempts in flight;
- lowest_latency: the lowest p50 over each deployment's last attempts (untried ones first);
- usage: the most headroom under the limits the upstream reports in its headers
  (console.providers.upstream_limits), then the fewest calls in the last minute per weight.

A deployment that answered 429 with Retry-After cools down for that long, and one whose
headers say it has no requests or tokens left cools down until their reset: it goes last
in every order until then, so traffic moves before the provider starts refusing. The other
deployments follow the chosen one in the strategy's order, so a failing deployment moves
the call to its sibling before the route's fallbacks.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from console.gateway.executor import Attempt, Target
from console.policy import Route
from console.providers.upstream_limits import UpstreamLimits

LimitsOf = Callable[[Target], UpstreamLimits | None]

LATENCY_WINDOW = 50  # attempts per deployment the p50 is taken over
USAGE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Balanced:
    targets: tuple[Target, ...]  # the deployments, in the order they are tried
    strategy: str
    why: str

    @property
    def reason_code(self) -> str:
        return f"balanced-{self.strategy.replace('_', '-')}"

    def as_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "chosen": self.targets[0].name, "why": self.why}


class Balancer:
    def __init__(
        self, limits_of: LimitsOf | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits_of = limits_of or (lambda target: None)
        self._clock = clock
        self._credit: dict[tuple[str, Target], float] = {}  # smooth round robin, per route
        self._in_flight: Counter[Target] = Counter()
        self._latency: dict[Target, deque[float]] = {}
        self._started: dict[Target, deque[float]] = {}
        self._cool_until: dict[Target, float] = {}

    def order(self, route: Route) -> Balanced:
        assert route.balance is not None
        now = self._clock()
        weights = {Target(d.model.provider, d.model.model): d.weight for d in route.balance.deployments}
        turn = self._round_robin(route.intent, weights)
        strategy = route.balance.strategy
        rank, why = self._rank(strategy, weights, turn, now)
        ready = [t for t in rank if self._cools_until(t, now) <= now]
        cooling = [t for t in rank if t not in ready]
        if cooling and ready:
            why += f"; {', '.join(t.name for t in cooling)} cooling down (429, or no limit left)"
        return Balanced(tuple(ready + cooling), strategy, why)

    # -- what the executor reports ----------------------------------------------------------

    def attempt_started(self, target: Target) -> None:
        now = self._clock()
        self._in_flight[target] += 1
        self._started.setdefault(target, deque()).append(now)
        self._recent(target, now)  # keeps the window a minute long

    def attempt_ended(self, attempt: Attempt) -> None:
        target = attempt.target
        self._in_flight[target] -= 1
        if attempt.status == "ok":
            self._latency.setdefault(target, deque(maxlen=LATENCY_WINDOW)).append(attempt.latency_ms)
        if attempt.http_status == 429 and attempt.retry_after_s:
            self._cool_until[target] = self._clock() + attempt.retry_after_s

    def _cools_until(self, target: Target, now: float) -> float:
        limits = self._limits_of(target)
        exhausted = limits.exhausted_until(now) if limits is not None else None
        return max(self._cool_until.get(target, 0.0), exhausted or 0.0)

    def _headroom(self, target: Target, now: float) -> float:
        limits = self._limits_of(target)
        found = limits.headroom(now) if limits is not None else None
        return 1.0 if found is None else found  # unknown: as if untouched

    def in_flight(self, target: Target) -> int:
        return self._in_flight[target]

    def report(self, routes: Sequence[Route]) -> list[dict[str, Any]]:
        """Each balanced route's deployments as they stand: load, share, cooling, learned limits."""
        now, found = self._clock(), []
        for route in routes:
            if route.balance is None:
                continue
            targets = [Target(d.model.provider, d.model.model) for d in route.balance.deployments]
            recent = {target: self._recent(target, now) for target in targets}
            total = sum(recent.values())
            for deployment, target in zip(route.balance.deployments, targets, strict=True):
                limits = self._limits_of(target)
                found.append(
                    {
                        "route": route.intent,
                        "deployment": target.name,
                        "strategy": route.balance.strategy,
                        "weight": deployment.weight,
                        "in_flight": self._in_flight[target],
                        "calls_last_minute": recent[target],
                        "share": recent[target] / total if total else None,
                        "cooling_s": round(max(self._cools_until(target, now) - now, 0.0), 3),
                        "limits": limits.as_json(now) if limits is not None else None,
                    }
                )
        return found

    # -- strategies -------------------------------------------------------------------------

    def _round_robin(self, intent: str, weights: dict[Target, float]) -> list[Target]:
        """Every deployment's place in the smooth weighted round robin; takes this call's turn."""
        total = sum(weights.values())
        for target, weight in weights.items():
            self._credit[(intent, target)] = self._credit.get((intent, target), 0.0) + weight
        turn = sorted(weights, key=lambda t: -self._credit[(intent, t)])
        self._credit[(intent, turn[0])] -= total
        return turn

    def _rank(
        self, strategy: str, weights: dict[Target, float], turn: list[Target], now: float
    ) -> tuple[list[Target], str]:
        place = {target: index for index, target in enumerate(turn)}  # ties go by the round robin
        if strategy == "least_busy":
            rank = sorted(turn, key=lambda t: (self._in_flight[t], place[t]))
            return rank, f"{self._in_flight[rank[0]]} in flight"
        if strategy == "lowest_latency":
            rank = sorted(turn, key=lambda t: (self._p50(t), place[t]))
            p50 = self._p50(rank[0])
            return rank, "not tried yet" if p50 < 0 else f"p50 {p50:.1f} ms"
        if strategy == "usage":
            rank = sorted(
                turn, key=lambda t: (-self._headroom(t, now), self._recent(t, now) / weights[t], place[t])
            )
            headroom = self._headroom(rank[0], now)
            return (
                rank,
                f"{headroom:.0%} of its limits left, {self._recent(rank[0], now)} calls in the last minute",
            )
        return turn, f"weight {weights[turn[0]]:g} of {sum(weights.values()):g}"

    def _p50(self, target: Target) -> float:
        samples = self._latency.get(target)
        return statistics.median(samples) if samples else -1.0

    def _recent(self, target: Target, now: float) -> int:
        started = self._started.get(target)
        if not started:
            return 0
        while started and started[0] <= now - USAGE_WINDOW_S:
            started.popleft()
        return len(started)
