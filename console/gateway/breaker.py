"""Circuit breakers per provider/model, modelled on Envoy's outlier detection.

A target is ejected after `consecutive_failures` failures in a row, or when its
failure ratio over the last `window_s` seconds reaches `failure_ratio` with at least
`min_requests` calls in that window. It stays out for `base_ejection_s` × the
number of times it has been ejected (capped at `max_ejection_s`), then one probe
request is let through (half-open): success closes the breaker, failure ejects it
again for longer. A target healthy for longer than `max_ejection_s` after its last
ejection starts afresh.

In cluster mode an ejection is shared (console/cluster/breakers.py): another replica's
ejection opens the breaker here too, until the time that ejection ends (`follow`); the
probe after it is this replica's own, and so is the ejection count behind its length.

Only the event-loop thread touches a breaker, so there is no lock: ejections followed
from the cluster's sync thread wait in a queue the loop applies on its next look.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from console.policy import BreakerConfig


class State(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


@dataclass
class Breaker:
    settings: BreakerConfig
    clock: Callable[[], float] = time.monotonic
    state: State = State.closed
    consecutive: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    probing: bool = False
    _window: deque[tuple[float, bool]] = field(default_factory=deque)

    def available(self) -> bool:
        """May a request go to this target now? Claims the probe when half-open."""
        if self.state is State.closed:
            return True
        if self.state is State.open and self.clock() >= self.ejected_until:
            self.state = State.half_open
        if self.state is State.half_open and not self.probing:
            self.probing = True
            return True
        return False

    def succeeded(self) -> None:
        self._observe(ok=True)
        self.consecutive = 0
        if self.state is State.half_open:
            self.state, self.probing = State.closed, False
            self._window.clear()
        elif self.ejections and self.clock() - self.ejected_until > self.settings.max_ejection_s:
            self.ejections = 0  # healthy for longer than the longest ejection: start afresh

    def abandoned(self) -> None:
        """The call was cancelled before it told anything: free the probe slot."""
        self.probing = False

    def failed(self) -> bool:
        """Count a failure; True when it ejects the target."""
        self._observe(ok=False)
        self.consecutive += 1
        if self.state is State.half_open or self._tripped():
            self._eject()
            return True
        return False

    def follow(self, until: float) -> None:
        """Open until `until` (on this breaker's clock): an ejection another replica made. It
        adds nothing to this breaker's ejection count; once it ends, the probe is this one's."""
        if until <= self.clock() or (self.state is State.open and self.ejected_until >= until):
            return
        self.state, self.probing = State.open, False
        self.ejected_until = until

    def retry_in(self) -> float:
        """Seconds until an ejected target may be probed (0 when it may be tried now)."""
        return max(0.0, self.ejected_until - self.clock()) if self.state is State.open else 0.0

    def _tripped(self) -> bool:
        if self.state is not State.closed:
            return False
        if self.consecutive >= self.settings.consecutive_failures:
            return True
        calls = len(self._window)
        return (
            calls >= self.settings.min_requests
            and self._window_failures() / calls >= self.settings.failure_ratio
        )

    def _eject(self) -> None:
        self.ejections += 1
        duration = self.settings.ejection_s(self.ejections)
        self.state, self.probing = State.open, False
        self.ejected_until = self.clock() + duration
        self.consecutive = 0
        self._window.clear()

    def _observe(self, ok: bool) -> None:
        now = self.clock()
        self._window.append((now, ok))
        horizon = now - self.settings.window_s
        while self._window and self._window[0][0] < horizon:
            self._window.popleft()

    def _window_failures(self) -> int:
        return sum(1 for _, ok in self._window if not ok)


class Breakers:
    """One breaker per `provider/model`, created on first use."""

    def __init__(
        self,
        settings: BreakerConfig,
        clock: Callable[[], float] = time.monotonic,
        on_ejection: Callable[[str, Breaker], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._by_target: dict[str, Breaker] = {}
        self.on_ejection = on_ejection  # the audit log hears of every ejection
        self._followed: deque[tuple[str, float]] = deque()  # from another thread: (target, until)

    def __getitem__(self, target: str) -> Breaker:
        if self._followed:
            self._apply_followed()
        breaker = self._by_target.get(target)
        if breaker is None:
            breaker = self._by_target[target] = Breaker(self.settings, self._clock)
        return breaker

    def failed(self, target: str) -> None:
        breaker = self[target]
        if breaker.failed() and self.on_ejection is not None:
            self.on_ejection(target, breaker)

    def follow(self, target: str, seconds: float) -> None:
        """Another replica ejected `target` for `seconds` more (any thread; applied on the loop)."""
        self._followed.append((target, self._clock() + seconds))

    def _apply_followed(self) -> None:
        while self._followed:
            target, until = self._followed.popleft()
            breaker = self._by_target.get(target)
            if breaker is None:
                breaker = self._by_target[target] = Breaker(self.settings, self._clock)
            breaker.follow(until)

    def states(self) -> dict[str, State]:
        if self._followed:
            self._apply_followed()
        return {target: breaker.state for target, breaker in self._by_target.items()}
