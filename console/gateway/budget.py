"""The ledger: hard caps that hold under any concurrency.

`Ledger` is the interface the steps use; `LocalLedger`, below, is the single box's.

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
from typing import Literal, Protocol

import orjson

from console.clock import new_local_id, utc_now
from console.gateway.executor import Plan
from console.gateway.keys import VirtualKey
from console.gateway.openai_api import ApiError
from console.gateway.pricing import PriceBook
from console.policy import Policy, Route
from console.providers.base import Body, Provider, Usage
from console.store.audit import AuditEvent
from console.store.recorder import Recorder

Period = Literal["day", "month"]
Clock = Callable[[], datetime]
TASKS_REMEMBERED = 200_000
NANOS = 1_000_000_000


def nanos_up(usd: float) -> int:
    return math.ceil(usd * NANOS - 1e-6)  # 2e-05 * 1e9 is 20000.000000000004


def cap_nanos(limit_usd: float) -> int:
    return math.floor(limit_usd * NANOS + 1e-6)


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
    reservation_id: str = field(default_factory=new_local_id)


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


class LedgerUnavailable(Exception):
    """The shared ledger cannot be reached: a capped call is refused, never served unbudgeted."""


class Ledger(Protocol):
    """Where reservations are held: this process (`LocalLedger`) or the cluster's PostgreSQL
    (console/cluster/ledger.py). The reserve and settle steps and `Call.finish` use only this."""

    async def reserve(self, caps: Sequence[Cap], amount_usd: float, lease_s: float) -> Reservation | Refusal:
        """Hold `amount_usd` against every cap, or none; LedgerUnavailable when it cannot tell.

        A hold left unsettled lapses after `lease_s` (a shared ledger's replica may die)."""
        ...

    def settle(self, reservation: Reservation, cost_usd: float) -> None:
        """Replace the hold by the real cost (0 releases it); never waits on the network."""
        ...

    def burn(self) -> list[Burn]: ...

    def outage(self) -> str | None:
        """Why the ledger cannot be reached right now, or None while it can."""
        ...


@dataclass
class LocalLedger:
    """The single box's ledger: in memory, under one lock; leases need no expiry here."""

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

    async def reserve(self, caps: Sequence[Cap], amount_usd: float, lease_s: float) -> Reservation | Refusal:
        return self.reserve_now(caps, amount_usd)

    def outage(self) -> str | None:
        return None

    def reserve_now(self, caps: Sequence[Cap], amount_usd: float) -> Reservation | Refusal:
        """Hold `amount_usd` against every cap, or against none and say which refused."""
        now, amount = self.clock(), nanos_up(amount_usd)
        buckets = [cap.bucket(now) for cap in caps]
        with self._lock:
            for cap, bucket in zip(caps, buckets, strict=True):
                self._caps[cap.scope, cap.period] = cap.limit_usd
                spent, held = self._spent.get(bucket, 0), self._held.get(bucket, 0)
                if spent + held + amount > cap_nanos(cap.limit_usd):
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


def caps_for(
    key: VirtualKey | None, route: Route | None, policy: Policy, workflow_id: str | None
) -> list[Cap]:
    """Every cap a call of this key, route and workflow is held to."""
    caps = []
    if key is not None and key.daily_cap is not None:
        caps.append(Cap(f"key:{key.key_id}", "day", key.daily_cap))
    if key is not None and key.monthly_cap is not None:
        caps.append(Cap(f"key:{key.key_id}", "month", key.monthly_cap))
    if route is not None and route.max_budget_daily is not None:
        caps.append(Cap(f"route:{route.intent}", "day", route.max_budget_daily))
    workflow = policy.workflows.get(workflow_id or "")
    if workflow is not None and workflow.max_budget_daily is not None:
        caps.append(Cap(f"workflow:{workflow_id}", "day", workflow.max_budget_daily))
    return caps


def worst_case(
    plans: Sequence[Plan], body: Body, providers: Mapping[str, Provider], prices: PriceBook
) -> float:
    """What the call may cost at most: the dearest target of each plan it may run, summed
    (an escalating call runs its small tier's plan, then its large tier's)."""
    bound = Usage(input_tokens=prompt_token_bound(body), output_tokens=_max_tokens(body))
    return sum(worst_of(plan, bound, providers, prices) for plan in plans)


def worst_of(plan: Plan, bound: Usage, providers: Mapping[str, Provider], prices: PriceBook) -> float:
    worst = 0.0
    for target in plan.targets:
        kind = providers[target.provider].kind
        cost = prices.worst_case(target.provider, kind, target.model, bound, plan.timeouts.total_s)
        if cost is None:
            raise ApiError(
                400,
                f"{target.name} has no known price, and this call is under a hard budget cap: "
                f"give it one under providers.{target.provider}.prices in the policy",
                param="model",
                code="model_unpriced",
            )
        worst = max(worst, cost)
    return worst


def prompt_token_bound(body: Body) -> int:
    """An upper bound on prompt tokens without a tokenizer: a token is at least one byte,
    and the JSON around each message outweighs the chat template's tokens."""
    return sum(len(orjson.dumps(body.get(name))) for name in ("messages", "prompt", "input", "tools"))


def _max_tokens(body: Body) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def audit_refusal(
    recorder: Recorder, refusal: Refusal, key: VirtualKey | None, details: Mapping[str, object]
) -> None:
    """An audit entry for the refused call, and one more, the incident, for the cap's first breach."""
    cap = refusal.cap
    payload = {
        "period": cap.period,
        "cap_usd": cap.limit_usd,
        "spent_usd": refusal.spent_usd,
        "held_usd": refusal.held_usd,
        "asked_usd": refusal.asked_usd,
        "route": details.get("route"),
        "workflow_id": details.get("workflow_id"),
    }
    if refusal.first:
        recorder.record_audit(
            AuditEvent(
                actor="gateway",
                actor_kind="system",
                action="budget.breach",
                subject=cap.scope,
                payload=payload,
            )
        )
    recorder.record_audit(
        AuditEvent(
            actor=key.name if key else "anonymous",
            actor_kind="key" if key else "system",
            action="budget.exceeded",
            subject=cap.scope,
            payload={**payload, "request_id": details.get("request_id")},
        )
    )


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
