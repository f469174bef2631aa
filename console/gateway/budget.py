"""The ledger: hard caps that hold under any concurrency.

Before a call, its worst-case cost is reserved against every cap that applies, all
or none, under one lock; afterwards the reservation settles to the real cost, or is
released when the call cost nothing. Spend plus what is held never passes a cap, so
concurrent calls cannot overshoot it the way check-then-add ledgers do.

A cap is a scope (`key:<id>`, `route:<intent>`, `workflow:<id>`) and a period (the
UTC day or month). Amounts are kept as integer nano-dollars, so released holds add
back to exactly zero; costs round up and caps down. Settled spend is loaded from the
traces at start; from then on the ledger lives in memory and the request path never
touches the database.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from console.clock import utc_now

Period = Literal["day", "month"]
Clock = Callable[[], datetime]
TASKS_REMEMBERED = 200_000
NANOS = 1_000_000_000


def nanos_up(usd: float) -> int:
    return math.ceil(usd * NANOS - 1e-6)  # 2e-05 * 1e9 is 20000.000000000004


def usd(nanos: int) -> float:
    return nanos / NANOS


@dataclass(frozen=True, slots=True)
class Cap:
    scope: str  # key:<key_id> | route:<intent> | workflow:<workflow_id>
    period: Period
    limit_usd: float

    def bucket(self, now: datetime) -> tuple[str, str]:
        return self.scope, period_key(self.period, now)


@dataclass(slots=True)
class Reservation:
    buckets: tuple[tuple[str, str], ...]
    nanos: int
    open: bool = True


@dataclass(frozen=True, slots=True)
class Refusal:
    cap: Cap
    spent_usd: float
    held_usd: float
    asked_usd: float
    first: bool = False  # the cap's first refusal in its period: the breach itself

    def message(self) -> str:
        left = max(self.cap.limit_usd - self.spent_usd - self.held_usd, 0.0)
        return (
            f"budget exceeded: {self.cap.scope} has a {self.cap.period}ly cap of ${self.cap.limit_usd:.4f}; "
            f"${self.spent_usd:.4f} spent and ${self.held_usd:.4f} held by calls in flight leave "
            f"${left:.4f}, and this call may cost up to ${self.asked_usd:.4f}"
        )


@dataclass(frozen=True, slots=True)
class Burn:
    """One cap's state, for the fleet pane and health."""

    scope: str
    period: Period
    limit_usd: float
    spent_usd: float
    held_usd: float


@dataclass
class Ledger:
    clock: Clock = utc_now
    _spent: dict[tuple[str, str], int] = field(default_factory=dict)
    _held: dict[tuple[str, str], int] = field(default_factory=dict)
    _caps: dict[tuple[str, Period], float] = field(default_factory=dict)
    _breached: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, spent: Mapping[tuple[str, str], float]) -> None:
        """Settled spend per (scope, period key), read from the traces at start."""
        with self._lock:
            self._spent.update({bucket: nanos_up(amount) for bucket, amount in spent.items()})

    def reserve(self, caps: Sequence[Cap], amount_usd: float) -> Reservation | Refusal:
        """Hold `amount_usd` against every cap, or against none and say which refused."""
        now, amount = self.clock(), nanos_up(amount_usd)
        buckets = [cap.bucket(now) for cap in caps]
        with self._lock:
            for cap, bucket in zip(caps, buckets, strict=True):
                self._caps[cap.scope, cap.period] = cap.limit_usd
                spent, held = self._spent.get(bucket, 0), self._held.get(bucket, 0)
                if spent + held + amount > math.floor(cap.limit_usd * NANOS + 1e-6):
                    first = bucket not in self._breached
                    self._breached.add(bucket)
                    return Refusal(cap, usd(spent), usd(held), amount_usd, first)
            for bucket in buckets:
                self._held[bucket] = self._held.get(bucket, 0) + amount
        return Reservation(tuple(buckets), amount)

    def settle(self, reservation: Reservation, cost_usd: float) -> None:
        """Replace the hold by the real cost (0 releases it); a second settle does nothing."""
        cost = nanos_up(cost_usd)
        with self._lock:
            if not reservation.open:
                return
            reservation.open = False
            for bucket in reservation.buckets:
                self._held[bucket] = self._held.get(bucket, 0) - reservation.nanos
                self._spent[bucket] = self._spent.get(bucket, 0) + cost

    def burn(self) -> list[Burn]:
        now = self.clock()
        with self._lock:
            return [
                Burn(
                    scope,
                    period,
                    limit,
                    usd(self._spent.get((scope, period_key(period, now)), 0)),
                    usd(self._held.get((scope, period_key(period, now)), 0)),
                )
                for (scope, period), limit in sorted(self._caps.items())
            ]


def period_key(period: Period, now: datetime) -> str:
    return now.strftime("%Y-%m-%d" if period == "day" else "%Y-%m")


class TaskSteps:
    """Calls per task, to cap an agent loop's fan-out; remembers the most recent tasks."""

    def __init__(self, remembered: int = TASKS_REMEMBERED) -> None:
        self._steps: OrderedDict[str, int] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def load(self, steps: Mapping[str, int]) -> None:
        with self._lock:
            self._steps.update(steps)

    def take(self, task_id: str, limit: int) -> bool:
        """Count one more call of the task; False (and not counted) when it would pass `limit`."""
        with self._lock:
            taken = self._steps.get(task_id, 0)
            if taken >= limit:
                return False
            self._steps[task_id] = taken + 1
            self._steps.move_to_end(task_id)
            while len(self._steps) > self._remembered:
                self._steps.popitem(last=False)
            return True
