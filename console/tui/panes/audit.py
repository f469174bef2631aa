"""Audit: the audit log, whether its chain links hold, and the human overrides with actor and reason."""

from __future__ import annotations

from typing import Any, ClassVar

import duckdb
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Static

from console.gateway.approvals import HeldCall
from console.tui import humanize
from console.tui.context import ConsoleContext
from console.tui.panes.base import Pane
from console.tui.panes.tables import Cell, fill, right
from console.tui.readmodel import audit
from console.tui.readmodel.audit import AuditView
from console.tui.screens.oversight import (
    Override,
    OverrideScreen,
    RouteAction,
    RouteActionScreen,
    console_actor,
)

EVENT_COLUMNS = ("seq", "time (UTC)", "actor", "kind", "action", "subject", "payload")
HELD_COLUMNS = ("approval", "held since (UTC)", "kind", "what", "route", "asked by", "arguments / payload")
HANDOFF_PREFIX = "handoff:"  # a held handoff's `tool` in the approvals queue: handoff:<contract>
OVERRIDE_COLUMNS = ("time (UTC)", "actor", "kind", "action", "decision", "subject", "reason")
PAYLOAD_WIDTH = 60


def event_row(event: dict[str, Any]) -> list[Cell]:
    payload = humanize.text(event.get("payload"))
    if len(payload) > PAYLOAD_WIDTH:
        payload = payload[: PAYLOAD_WIDTH - 1] + "…"
    return [
        right(humanize.count(event["seq"])),
        humanize.day_and_time(event["ts"]),
        event["actor"],
        event["actor_kind"],
        event["action"],
        humanize.text(event.get("subject")),
        payload,
    ]


def override_row(item: dict[str, Any]) -> list[Cell]:
    return [
        humanize.day_and_time(item["ts"]),
        item["actor"],
        item["kind"],
        item["action"],
        humanize.text(item.get("decision")),
        humanize.text(item.get("subject")),
        humanize.text(item.get("reason")),
    ]


def held_kind(call: HeldCall) -> str:
    return "handoff" if call.tool.startswith(HANDOFF_PREFIX) else "tool call"


def held_what(call: HeldCall) -> str:
    """A tool call's tool; a handoff's contract and id (the approvals queue holds both)."""
    if call.tool.startswith(HANDOFF_PREFIX):
        return f"{call.tool.removeprefix(HANDOFF_PREFIX)} ({call.request_id})"
    return call.tool


def held_row(call: HeldCall) -> list[Cell]:
    return [
        call.approval_id,
        humanize.day_and_time(call.held_at),
        held_kind(call),
        held_what(call),
        humanize.text(call.route),
        call.requested_by,
        call.arguments[:PAYLOAD_WIDTH],
    ]


def chain_text(view: AuditView) -> str:
    chain = view.chain
    state = (
        "chain links intact"
        if chain.intact
        else f"CHAIN BROKEN at seq {chain.first_break_seq}: an event is missing or was edited"
    )
    return (
        f"last {audit.WINDOW_DAYS} days: {humanize.count(view.total_events)} events · {state} "
        "(links checked; v verifies every hash and signed checkpoint)"
    )


class AuditPane(Pane):
    TITLE = "Audit"
    REFRESH_S = 5.0
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("v", "verify", "Verify chain"),
        Binding("a", "decide(True)", "Approve held"),
        Binding("x", "decide(False)", "Deny held"),
        Binding("s", "route(True)", "Stop route"),
        Binding("r", "route(False)", "Resume route"),
        Binding("o", "override", "Override a verdict"),
    ]

    class Verified(Message):
        def __init__(self, ok: bool, report: str) -> None:
            super().__init__()
            self.ok, self.report = ok, report

    FOCUS = "#audit-events"

    def __init__(self, context: ConsoleContext, *, id: str = "audit") -> None:
        super().__init__(context, id=id)

    def compose(self) -> ComposeResult:
        yield Static("", id="audit-chain", classes="pane-status")
        yield Static("", id="audit-verified", classes="pane-status")
        yield Static("", id="audit-stops", classes="pane-status")
        yield Static(
            "Held for approval: tool calls and handoffs (a approves, x denies)", classes="section-title"
        )
        yield DataTable(id="audit-held", cursor_type="row", zebra_stripes=True)
        yield Static("Overrides and approvals", classes="section-title")
        yield DataTable(id="audit-overrides", cursor_type="row", zebra_stripes=True)
        yield Static("Audit log, newest first", classes="section-title")
        yield DataTable(id="audit-events", cursor_type="row", zebra_stripes=True)

    def fetch(self, cursor: duckdb.DuckDBPyConnection) -> AuditView:
        self.context.engine.oversight  # noqa: B018 - built here, in the worker: its first build reads the store
        return audit.snapshot(cursor, self.context.clock())

    def show(self, data: AuditView) -> None:
        chain = self.query_one("#audit-chain", Static)
        chain.update(chain_text(data))
        chain.set_class(not data.chain.intact, "-alert")
        overrides: DataTable[Cell] = self.query_one("#audit-overrides", DataTable)
        fill(overrides, OVERRIDE_COLUMNS, [override_row(item) for item in data.overrides])
        events: DataTable[Cell] = self.query_one("#audit-events", DataTable)
        fill(events, EVENT_COLUMNS, [event_row(event) for event in data.events])
        self._show_oversight()

    def _show_oversight(self) -> None:
        """Held calls and stops live in the Engine's memory: no database call, so on the UI thread."""
        held: DataTable[Cell] = self.query_one("#audit-held", DataTable)
        fill(held, HELD_COLUMNS, [held_row(call) for call in self._held()])
        stopped = self.context.engine.oversight.stops.stopped()
        text = ", ".join(f"{route} (by {stop.actor}: {stop.reason})" for route, stop in stopped.items())
        line = self.query_one("#audit-stops", Static)
        line.update(f"stopped routes: {text}" if text else "no route is stopped (s stops one)")
        line.set_class(bool(text), "-alert")

    def _held(self) -> list[HeldCall]:
        approvals = self.context.engine.gateway.approvals if self.context.gateway_url else None
        return approvals.pending() if approvals is not None else []

    def action_decide(self, approve: bool) -> None:
        held = self._held()
        table: DataTable[Cell] = self.query_one("#audit-held", DataTable)
        if not held or table.cursor_row >= len(held):
            self.notify("nothing is held: no tool call, no handoff", severity="warning")
            return
        call = held[table.cursor_row]
        approvals = self.context.engine.gateway.approvals
        assert approvals is not None
        try:
            approvals.decide(call.approval_id, approve, console_actor())
        except ValueError as exc:
            self.notify(str(exc), severity="warning")
        else:
            decided = "approved" if approve else "denied"
            self.notify(f"{decided} {held_kind(call)} {held_what(call)} ({call.approval_id})")
        self._show_oversight()

    def action_route(self, stop: bool) -> None:
        oversight = self.context.engine.oversight
        routes = sorted(oversight.known_routes) if stop else sorted(oversight.stops.stopped())
        self.app.push_screen(RouteActionScreen(stop, routes), self._route_chosen)

    def action_override(self) -> None:
        self.app.push_screen(OverrideScreen(), self._override_chosen)

    def _override_chosen(self, override: Override | None) -> None:
        if override is None:
            return
        try:
            self.context.engine.oversight.override(
                override.request_id, override.verdict, override.reason, console_actor()
            )
        except ValueError as exc:
            self.notify(str(exc), severity="error")
        else:
            self.notify(f"override recorded for {override.request_id}")
            self.reload()

    def _route_chosen(self, action: RouteAction | None) -> None:
        if action is None:
            return
        oversight = self.context.engine.oversight
        try:
            if action.stop:
                oversight.stop_route(action.route, action.reason, console_actor())
            else:
                oversight.resume_route(action.route, console_actor(), action.reason)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
        else:
            self.notify(f"route {action.route} {'stopped' if action.stop else 'resumed'}")
        self._show_oversight()

    def action_verify(self) -> None:
        self.query_one("#audit-verified", Static).update("verifying every entry and checkpoint…")
        self._verify()

    @work(thread=True, exclusive=True, group="audit-verify", exit_on_error=False)
    def _verify(self) -> None:
        cursor = self.context.new_cursor()
        try:
            result = self.context.engine.verify_audit(cursor)
        except Exception as exc:
            self.post_message(self.Verified(False, f"verification failed: {type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Verified(result.ok, result.report()))
        finally:
            self.context.release(cursor)

    def on_audit_pane_verified(self, message: AuditPane.Verified) -> None:
        line = self.query_one("#audit-verified", Static)
        line.update(message.report)
        line.set_class(not message.ok, "-error")
