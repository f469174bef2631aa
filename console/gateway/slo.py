"""Latency SLOs: a route whose primary is slow moves its traffic to a faster candidate, and back.

Per route and candidate, the gateway keeps the latencies of the last `latency_slo_window`
attempts (to the first byte for streams; timeouts count, fast failures do not). When the
primary's p95 over a full window is above the route's `latency_slo_ms`, the candidate with
the lowest p95 (a candidate with no measurements yet counts as fast) answers first and the
trace says `latency-slo-override`. One call in PROBE_EVERY still goes to the primary while it
is overridden, so its window keeps moving; once its p95 is back under the SLO, traffic
returns. Windows count calls, not seconds, so a quiet route keeps its last verdict.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from console.gateway.executor import Attempt, Target
from console.policy import Route

PROBE_EVERY = 5
SLOW_ERRORS = frozenset({"timeout"})


def p95(latencies: Iterable[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(latencies)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


@dataclass(frozen=True, slots=True)
class SloChoice:
    targets: tuple[Target, ...]
    overridden: bool
    primary_p95_ms: float | None
    probe: bool = False  # overridden, but this call measures the primary

    def as_json(self, slo_ms: int) -> dict[str, object]:
        found: dict[str, object] = {"slo_ms": slo_ms, "overridden": self.overridden}
        if self.primary_p95_ms is not None:
            found["primary_p95_ms"] = round(self.primary_p95_ms, 1)
        if self.probe:
            found["probe"] = True
        return found


class LatencySlos:
    """Sliding windows of attempt latencies per (route, candidate); thread-safe."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, route: Route, attempts: Sequence[Attempt]) -> None:
        if route.latency_slo_ms is None:
            return
        with self._lock:
            for attempt in attempts:
                if attempt.status == "ok" or attempt.error_type in SLOW_ERRORS:
                    self._window(route, attempt.target).append(attempt.latency_ms)

    def choose(self, route: Route, targets: tuple[Target, ...]) -> SloChoice:
        """The targets in the order this call should try them."""
        slo = route.latency_slo_ms
        if slo is None or len(targets) < 2:
            return SloChoice(targets, False, None)
        with self._lock:
            primary = self._window(route, targets[0])
            measured = p95(primary) if len(primary) == primary.maxlen else None
            if measured is None or measured <= slo:
                self._calls[route.intent] = 0
                return SloChoice(targets, False, measured)
            calls = self._calls[route.intent] = self._calls.get(route.intent, 0) + 1
            if calls % PROBE_EVERY == 0:
                return SloChoice(targets, True, measured, probe=True)
            others = sorted(targets[1:], key=lambda target: self._p95_or_zero(route, target))
        return SloChoice((others[0], *[t for t in targets if t != others[0]]), True, measured)

    def _p95_or_zero(self, route: Route, target: Target) -> float:
        window = self._window(route, target)
        return p95(window) if window else 0.0

    def _window(self, route: Route, target: Target) -> deque[float]:
        key = (route.intent, target.name)
        window = self._windows.get(key)
        if window is None or window.maxlen != route.latency_slo_window:
            window = self._windows[key] = deque(window or (), maxlen=route.latency_slo_window)
        return window
