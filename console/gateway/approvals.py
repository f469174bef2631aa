"""Tool policy: which tool calls a model may make, and the queue of calls waiting for a human.

A route lists tools the model may call freely (`allow`) and tools that need a human's
approval (`approval`). In a response, a call of any other tool is removed and flagged;
a call that needs approval is held: the response waits (within the route's deadline)
while the call sits in the queue, shown by the console and `fleetdeck approvals list`.
Approval releases it; denial or the deadline releases the response without it and with
a refusal the calling app can read. Each decision is one audit entry naming its actor
(approval.granted or approval.denied; a call nobody decided is denied by the system). A
call whose client went away while it waited leaves the queue (approval.withdrawn).

In cluster mode (an `ApprovalMirror`, console/cluster/approvals.py) the list shows the
calls held on every replica, and a decision on a call held elsewhere goes to PostgreSQL,
where the holding replica's sync job picks it up: its audit entry is written there, by
the replica holding the call, naming the actor and the replica it was decided on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from console.clock import new_request_id, utc_now
from console.errors import DomainError, Invalid
from console.store.audit import AuditEvent
from console.store.recorder import Recorder


@dataclass
class HeldCall:
    approval_id: str
    request_id: str
    route: str | None
    tool: str
    arguments: str
    requested_by: str
    held_at: datetime = field(default_factory=utc_now)
    expires_at: datetime | None = None  # when the deadline denies it, once held
    decided: asyncio.Future[tuple[str, str]] | None = None  # (decision, actor)

    def listing(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "request_id": self.request_id,
            "route": self.route,
            "tool": self.tool,
            "arguments": self.arguments,
            "requested_by": self.requested_by,
            "held_at": self.held_at.isoformat(),
        }


class NotHeld(ValueError):
    """No such call is held here."""


class ApprovalMirror(Protocol):
    """The calls held on the cluster's other replicas, and decisions on them (PostgreSQL).
    Each raises a DomainError when the cluster cannot be reached."""

    replica: str

    def held_elsewhere(self) -> list[dict[str, Any]]: ...

    def decide_elsewhere(self, approval_id: str, approve: bool, actor: str, reason: str) -> dict[str, Any]:
        """The call's listing once the decision is written; NotHeld when no replica holds it."""
        ...


class ApprovalQueue:
    """Held tool calls. The gateway's loop waits on them; the admin API decides from a worker thread."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._held: dict[str, tuple[HeldCall, asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()
        self.mirror: ApprovalMirror | None = None

    async def hold(self, call: HeldCall, timeout_s: float) -> tuple[str, str]:
        """Wait for a human's decision on `call`; ("expired", "gateway") after `timeout_s`."""
        loop = asyncio.get_running_loop()
        call.decided = loop.create_future()
        call.expires_at = call.held_at + timedelta(seconds=max(timeout_s, 0.0))
        with self._lock:
            self._held[call.approval_id] = (call, loop)
        self._audit(call.requested_by, "key", "approval.requested", call, {})
        started = loop.time()
        try:
            async with asyncio.timeout(max(timeout_s, 0.0)):
                return await asyncio.shield(call.decided)
        except TimeoutError:
            if self._take(call.approval_id) is not None:
                expired = {"expired": True, "waited_s": round(loop.time() - started, 3)}
                self._audit("gateway", "system", "approval.denied", call, expired)
                return "expired", "gateway"
            return await call.decided  # decided in the very last moment
        except asyncio.CancelledError:  # the request ended first: its client went away, or shutdown
            if self._take(call.approval_id) is not None:
                gone = {"reason": "request_cancelled"}
                self._audit("gateway", "system", "approval.withdrawn", call, gone)
            raise
        finally:
            self._take(call.approval_id)

    def decide(
        self, approval_id: str, approve: bool, actor: str, reason: str = "", via: str | None = None
    ) -> HeldCall:
        """Approve or deny a held call (from any thread); its one audit entry names the actor
        (and `via`, the replica it was decided on when that is another one)."""
        taken = self._take(approval_id)
        if taken is None:
            raise NotHeld(f"no held tool call {approval_id!r} (see `fleetdeck approvals list`)")
        call, loop = taken
        decision = "approved" if approve else "denied"
        payload = {"reason": reason} if via is None else {"reason": reason, "decided_on": via}
        self._audit(actor, "human", "approval.granted" if approve else "approval.denied", call, payload)
        future = call.decided
        if future is not None:
            loop.call_soon_threadsafe(_settle, future, (decision, actor))
        return call

    def pending(self) -> list[HeldCall]:
        with self._lock:
            return [call for call, _ in self._held.values()]

    def answer(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The admin API's `/_admin/approvals`: `{"action": "list" | "approve" | "deny", …}`."""
        action, actor = request.get("action"), str(request.get("actor") or "admin-api")
        try:
            if action in ("approve", "deny"):
                approve, reason = action == "approve", str(request.get("reason") or "")
                decided = self._decide_anywhere(str(request.get("approval_id")), approve, actor, reason)
                return {"decided": decided, "decision": "approved" if approve else "denied"}
            if action != "list":
                raise ValueError("send {'action': 'list' | 'approve' | 'deny', …}")
        except ValueError as exc:
            raise Invalid(str(exc), code="approval_refused") from None
        return self._everywhere()

    def _decide_anywhere(self, approval_id: str, approve: bool, actor: str, reason: str) -> dict[str, Any]:
        try:
            return self.decide(approval_id, approve, actor, reason).listing()
        except NotHeld:
            if self.mirror is None:
                raise
            return self.mirror.decide_elsewhere(approval_id, approve, actor, reason)

    def _everywhere(self) -> dict[str, Any]:
        """The calls held here and, in cluster mode, on every other replica, oldest first."""
        here = [call.listing() for call in self.pending()]
        if self.mirror is None:
            return {"pending": here}
        here = [{**row, "replica": self.mirror.replica, "state": "held"} for row in here]
        try:
            elsewhere = self.mirror.held_elsewhere()
        except DomainError as exc:  # this replica's own calls can still be decided
            return {"pending": here, "elsewhere_unavailable": str(exc)}
        ids = {row["approval_id"] for row in here}
        rows = here + [row for row in elsewhere if row["approval_id"] not in ids]
        return {"pending": sorted(rows, key=lambda row: str(row["held_at"]))}

    def _take(self, approval_id: str) -> tuple[HeldCall, asyncio.AbstractEventLoop] | None:
        with self._lock:
            return self._held.pop(approval_id, None)

    def _audit(self, actor: str, kind: str, action: str, call: HeldCall, extra: dict[str, Any]) -> None:
        payload = {"request_id": call.request_id, "tool": call.tool, "route": call.route, **extra}
        self._recorder.record_audit(
            AuditEvent(actor=actor, actor_kind=kind, action=action, subject=call.approval_id, payload=payload)
        )


def _settle(future: asyncio.Future[tuple[str, str]], outcome: tuple[str, str]) -> None:
    if not future.done():
        future.set_result(outcome)


def new_approval_id() -> str:
    return "apr_" + new_request_id().lower()[-12:]
