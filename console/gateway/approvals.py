"""Tool policy: which tool calls a model may make, and the queue of calls waiting for a human.

A route lists tools the model may call freely (`allow`) and tools that need a human's
approval (`approval`). In a response, a call of any other tool is removed and flagged;
a call that needs approval is held: the response waits (within the route's deadline)
while the call sits in the queue, shown by the console and `fleetdeck approvals list`.
Approval releases it; denial or the deadline releases the response without it and with
a refusal the calling app can read. Each decision is one audit entry naming its actor
(approval.granted or approval.denied; a call nobody decided is denied by the system). A
call whose client went away while it waited leaves the queue (approval.withdrawn).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from console.clock import new_request_id, utc_now
from console.errors import Invalid
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


class ApprovalQueue:
    """Held tool calls. The gateway's loop waits on them; the admin API decides from a worker thread."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._held: dict[str, tuple[HeldCall, asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()

    async def hold(self, call: HeldCall, timeout_s: float) -> tuple[str, str]:
        """Wait for a human's decision on `call`; ("expired", "gateway") after `timeout_s`."""
        loop = asyncio.get_running_loop()
        call.decided = loop.create_future()
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

    def decide(self, approval_id: str, approve: bool, actor: str, reason: str = "") -> HeldCall:
        """Approve or deny a held call (from any thread); its one audit entry names the actor."""
        taken = self._take(approval_id)
        if taken is None:
            raise ValueError(f"no held tool call {approval_id!r} (see `fleetdeck approvals list`)")
        call, loop = taken
        decision = "approved" if approve else "denied"
        self._audit(
            actor, "human", "approval.granted" if approve else "approval.denied", call, {"reason": reason}
        )
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
                call = self.decide(str(request.get("approval_id")), approve, actor, reason)
                return {"decided": call.listing(), "decision": "approved" if approve else "denied"}
            if action != "list":
                raise ValueError("send {'action': 'list' | 'approve' | 'deny', …}")
        except ValueError as exc:
            raise Invalid(str(exc), code="approval_refused") from None
        return {"pending": [call.listing() for call in self.pending()]}

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
