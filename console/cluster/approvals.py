"""Tool calls held for a human, seen and decided from any replica (PostgreSQL).

A held call lives in the memory of the replica serving its request, which waits on it.
That replica's sync job publishes each call it holds (its redacted arguments, who asked,
its deadline as `expires_at`) and withdraws it once it is no longer held. `approvals
list` on any replica reads them all, each with the replica holding it, shown `gone`
when that replica's heartbeat stopped: its call ended with it, and nobody can decide it
any more; the row expires at the call's deadline. `approvals approve|deny ID` for a
call held elsewhere writes the decision on its row; the holding replica's next sync
(every 0.25 s) applies it, writes the decision's audit entry and releases the response.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from console.cluster.ledger import FAILURES
from console.cluster.status import ALIVE_WITHIN_S
from console.cluster.times import aware_utc, naive_utc
from console.gateway.approvals import ApprovalQueue, HeldCall, NotHeld

log = logging.getLogger("fleetdeck.cluster")
PUBLISH = (
    "INSERT INTO approvals (approval_id, replica, request_id, route, tool, arguments, requested_by, "
    "held_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
LISTED = (
    "SELECT a.approval_id, a.request_id, a.route, a.tool, a.arguments, a.requested_by, a.held_at, "
    "a.replica, coalesce(extract(epoch FROM now() - r.seen_at), 'Infinity')::double precision "
    "FROM approvals a LEFT JOIN replicas r ON r.replica = a.replica"
)


class SharedApprovals:
    def __init__(self, replica: str, admin_connection: Callable[[], psycopg.Connection]) -> None:
        self.replica, self._admin_connection = replica, admin_connection
        self._queue: ApprovalQueue | None = None

    def attach(self, queue: ApprovalQueue) -> None:
        self._queue = queue

    # -- the sync job ------------------------------------------------------------------------

    def sync(self, conn: psycopg.Connection) -> None:
        """Publish the calls held here, withdraw the ones no longer held, apply decisions."""
        if self._queue is None:
            conn.execute("DELETE FROM approvals WHERE expires_at < now()")
            return
        held = {call.approval_id: call for call in self._queue.pending()}
        rows = conn.execute(  # one round trip: the expired (any replica's, dead ones' too) go first
            "WITH expired AS (DELETE FROM approvals WHERE expires_at < now() RETURNING approval_id) "
            "SELECT approval_id, decision, decided_by, reason, decided_on FROM approvals "
            "WHERE replica = %s AND approval_id NOT IN (SELECT approval_id FROM expired)",
            [self.replica],
        ).fetchall()
        published = {row[0] for row in rows}
        fresh = [_row(call, self.replica) for id_, call in held.items() if id_ not in published]
        if fresh:
            with conn.cursor() as cur:
                cur.executemany(PUBLISH, fresh)
        done = [id_ for id_ in published if id_ not in held]
        for approval_id, decision, actor, reason, via in rows:
            if decision is None or approval_id not in held:
                continue
            with contextlib.suppress(NotHeld):  # its deadline came first
                self._queue.decide(approval_id, decision == "approved", actor, reason or "", via)
            done.append(approval_id)
        if done:
            conn.execute("DELETE FROM approvals WHERE approval_id = ANY(%s)", [done])

    def leave(self, conn: psycopg.Connection) -> None:
        """At a clean stop: this replica holds nothing any more (or, unreachable, until expiry)."""
        with contextlib.suppress(*FAILURES):
            conn.execute("DELETE FROM approvals WHERE replica = %s", [self.replica])

    # -- what `approvals list|approve|deny` ask (the admin API's worker thread) -------------

    def held_elsewhere(self) -> list[dict[str, Any]]:
        with self._admin_connection() as conn:
            rows = conn.execute(
                f"{LISTED} WHERE a.replica <> %s AND a.decision IS NULL AND a.expires_at > now() "
                "ORDER BY a.held_at",
                [self.replica],
            ).fetchall()
        return [_listing(row) for row in rows]

    def decide_elsewhere(self, approval_id: str, approve: bool, actor: str, reason: str) -> dict[str, Any]:
        with self._admin_connection() as conn:
            found = conn.execute(f"{LISTED} WHERE a.approval_id = %s", [approval_id]).fetchone()
            if found is None:
                raise NotHeld(f"no replica holds a tool call {approval_id!r} (see `approvals list`)")
            listing = _listing(found)
            if listing["replica"] == self.replica:  # published here, but no longer held here
                raise NotHeld(f"tool call {approval_id!r} was decided already, or its deadline passed")
            if listing["state"] == "gone":
                raise NotHeld(
                    f"tool call {approval_id!r} was held on replica {listing['replica']}, which is gone "
                    f"(last seen {listing['seen_s_ago']:.0f} s ago): the call ended with it"
                )
            decided = conn.execute(
                "UPDATE approvals SET decision = %s, decided_by = %s, reason = %s, decided_on = %s, "
                "decided_at = now() WHERE approval_id = %s AND decision IS NULL AND expires_at > now() "
                "RETURNING approval_id",
                ["approved" if approve else "denied", actor, reason, self.replica, approval_id],
            ).fetchone()
        if decided is None:
            raise NotHeld(f"tool call {approval_id!r} was decided already, or its deadline passed")
        return listing


def _row(call: HeldCall, replica: str) -> list[Any]:
    expires_at = call.expires_at or call.held_at
    return [
        *(call.approval_id, replica, call.request_id, call.route, call.tool, call.arguments),
        *(call.requested_by, aware_utc(call.held_at), aware_utc(expires_at)),
    ]


def _listing(row: tuple[Any, ...]) -> dict[str, Any]:
    approval_id, request_id, route, tool, arguments, requested_by, held_at, replica, seen_s_ago = row
    return {
        "approval_id": approval_id,
        "request_id": request_id,
        "route": route,
        "tool": tool,
        "arguments": arguments,
        "requested_by": requested_by,
        "held_at": naive_utc(held_at).isoformat(),
        "replica": replica,
        "state": "held" if float(seen_s_ago) <= ALIVE_WITHIN_S else "gone",
        "seen_s_ago": round(float(seen_s_ago), 2),
    }
